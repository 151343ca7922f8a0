"""Moving everything from one backend to another (``python -m api.admin copy``): keys,
datasets, documents with their uploaded files, chunks and tasks.

Rows whose key the target already has are left alone, so a copy interrupted at any point is
simply run again (each batch and each file is one transaction on the target). Afterwards every
table is compared: the same number of rows and the same checksum (sha256 over the rows in key
order, over the columns both backends store), and each file's sha256. Pure orchestration over
the Transfer seam; the report is a list of lines."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from api.storage.base import TABLES, Backend, Transfer

BATCH = 500
READ_BLOCK = 1024 * 1024


@dataclass
class TableReport:
    table: str
    source_rows: int = 0
    added: int = 0
    target_rows: int = 0
    source_sum: str = ""
    target_sum: str = ""

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum


@dataclass
class CopyReport:
    tables: list[TableReport] = field(default_factory=list)
    files_copied: int = 0
    files_present: int = 0
    files_mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and not self.files_mismatched

    def lines(self) -> list[str]:
        out = [
            f"{t.table}: {t.source_rows} in the source, {t.added} copied, {t.target_rows} in the"
            f" target, checksum {'matches' if t.ok else 'DIFFERS'}"
            for t in self.tables
        ]
        out.append(
            f"files: {self.files_copied} copied, {self.files_present} already there,"
            f" {len(self.files_mismatched)} differ"
            + (f" ({', '.join(self.files_mismatched[:5])})" if self.files_mismatched else "")
        )
        out.append("verified: every table and file matches" if self.ok else "NOT verified")
        return out


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(rows, BATCH)):
        yield batch


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def table_sum(transfer: Transfer, table: str) -> tuple[int, str]:
    """(rows, sha256 of the rows in key order) of a table."""
    digest = hashlib.sha256()
    count = 0
    _, columns = TABLES[table]
    for row in transfer.rows(table):
        values = [_canonical(row[col]) for col in columns]
        digest.update(json.dumps(values, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def _file_sum(transfer: Transfer, document: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    with transfer.open_file(document) as stream:
        while block := stream.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def copy(source: Backend, target: Backend) -> CopyReport:
    report = CopyReport()
    target.migrations.migrate()
    for table in TABLES:
        entry = TableReport(table)
        for batch in _batches(source.transfer.rows(table)):
            entry.added += target.transfer.put_rows(table, batch)
        if table == "documents":  # files right after their rows, before chunks and tasks
            for document in source.transfer.rows("documents"):
                if target.transfer.has_file(document):
                    report.files_present += 1
                    continue
                with source.transfer.open_file(document) as stream:
                    target.transfer.put_file(document, stream)
                report.files_copied += 1
        entry.source_rows, entry.source_sum = table_sum(source.transfer, table)
        entry.target_rows, entry.target_sum = table_sum(target.transfer, table)
        report.tables.append(entry)
    for document in source.transfer.rows("documents"):
        if _file_sum(source.transfer, document) != _file_sum(target.transfer, document):
            report.files_mismatched.append(str(document["id"]))
    return report
