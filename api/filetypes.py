"""The file types this server accepts: one record per type in ``FILE_TYPES``.

Everything about a file type comes from its record: whether an upload is accepted
(``for_name``; a type is accepted if and only if it has a parser), the parser the
executors run (``parser_for``), RAGFlow's document ``type`` and the chunk method
RAGFlow assigns it, the parse-time error's list of supported suffixes, the upload's
OpenAPI description (``openapi_file_schema``) and the table in docs/file-types.md
(``python -m api.filetypes --update-docs``).

To add a file type: write its parser (bytes and limits in, sections out, bounded
like the others, see api/parsing/), add one ``FileType`` here, a sample in
tests/support/sample_files.py ``SAMPLES``, and regenerate the docs.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from typing import Any

from api.docs_table import GeneratedTable
from api.parsing.mail import parse_eml
from api.parsing.office import parse_docx, parse_pptx, parse_xls, parse_xlsx
from api.parsing.parsers import (
    Parser,
    UnsupportedType,
    parse_csv,
    parse_html,
    parse_json,
    parse_jsonl,
    parse_markdown,
    parse_pdf,
    parse_text,
)


@dataclass(frozen=True)
class FileType:
    """One file type. ``ragflow_type`` is RAGFlow's FileType for it (a document's
    ``type``); ``chunk_method``, when set, is the one RAGFlow gives every document of
    this type (else the dataset's); ``method_locked`` types refuse a change of it."""

    name: str
    suffixes: tuple[str, ...]
    media_type: str
    parser: Parser
    ragflow_type: str = "doc"
    chunk_method: str | None = None
    method_locked: bool = False

    @property
    def parsed_into(self) -> str:
        """What the parser makes of a file: the first paragraph of its docstring."""
        return (inspect.getdoc(self.parser) or "").split("\n\n")[0].replace("\n", " ")


def _spaced(suffixes: str) -> tuple[str, ...]:
    return tuple(suffixes.split())


FILE_TYPES: tuple[FileType, ...] = (
    FileType("PDF", ("pdf",), "application/pdf", parse_pdf, ragflow_type="pdf"),
    FileType(
        "Word document",
        ("docx",),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        parse_docx,
    ),
    FileType(
        "Excel workbook",
        ("xlsx",),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        parse_xlsx,
    ),
    FileType("Excel 97-2003 workbook", ("xls",), "application/vnd.ms-excel", parse_xls),
    FileType(
        "PowerPoint presentation",
        ("pptx",),
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        parse_pptx,
        chunk_method="presentation",
        method_locked=True,
    ),
    FileType("E-mail", ("eml",), "message/rfc822", parse_eml, chunk_method="email"),
    FileType("CSV", ("csv",), "text/csv", parse_csv),
    FileType("TSV", ("tsv",), "text/tab-separated-values", parse_csv),
    FileType("Markdown", ("md", "markdown", "mdx"), "text/markdown", parse_markdown),
    FileType("HTML", ("html", "htm"), "text/html", parse_html),
    FileType("JSON", ("json",), "application/json", parse_json),
    FileType("JSON Lines", ("jsonl", "ndjson", "ldjson"), "application/jsonl", parse_jsonl),
    FileType(
        "Plain text",
        _spaced("txt text log rst tex srt vtt"),
        "text/plain",
        parse_text,
    ),
    FileType(
        "Source code",
        _spaced(
            "py pyi js mjs cjs jsx ts tsx java c cc cpp cxx h hh hpp hxx cs go rs rb php pl pm"
            " sh bash zsh ps1 bat sql kt kts swift scala lua r m mm dart vue svelte css scss less"
        ),
        "text/plain",
        parse_text,
    ),
    FileType(
        "Configuration and data text",
        _spaced("xml yml yaml toml ini cfg conf properties env"),
        "text/plain",
        parse_text,
    ),
)

_BY_SUFFIX: dict[str, FileType] = {s: t for t in FILE_TYPES for s in t.suffixes}


def suffix(name: str) -> str:
    """The name's extension, lower case, without the dot ('' when it has none)."""
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def for_suffix(ext: str) -> FileType | None:
    """The record for an extension (with or without the dot, any case); None if unknown."""
    return _BY_SUFFIX.get(ext.lower().lstrip("."))


def for_name(name: str) -> FileType | None:
    """The record for a file name, None when the type is not accepted (upload refuses it)."""
    return for_suffix(suffix(name))


def accepted_suffixes() -> list[str]:
    """Every accepted extension, sorted."""
    return sorted(_BY_SUFFIX)


def parser_for(ext: str) -> Parser:
    """The parser for an extension; ``UnsupportedType`` (a ParseError) when there is none
    (only documents stored before their type was dropped can get here)."""
    found = for_suffix(ext)
    if found is None:
        raise UnsupportedType(
            f"parsing .{ext.lower().lstrip('.')} files is not supported by this server "
            f"(supported: {', '.join(accepted_suffixes())}); convert the file and upload it again"
        )
    return found.parser


def openapi_file_schema() -> dict[str, Any]:
    """The OpenAPI schema of the upload's ``file`` part: binary, with the accepted types."""
    return {
        "type": "string",
        "format": "binary",
        "description": (
            "One or more files. Accepted by name suffix: "
            + "; ".join(f"{t.name} ({', '.join(t.suffixes)})" for t in FILE_TYPES)
            + ". Any other suffix is refused with code 500 and"
            " '<name>: This type of file has not been supported yet!'."
        ),
    }


_DATASET_METHOD = "the dataset's"


def _cell(docstring: str) -> str:
    """Docstring markup as a Markdown table cell: ``code`` -> `code`, pipes escaped."""
    return re.sub(r"``(.+?)``", r"`\1`", docstring).replace("|", "\\|")


def _rows() -> list[str]:
    return [
        "| file type | suffixes | media type | RAGFlow `type` | chunk method | parsed into |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {t.name} | {', '.join(f'`.{s}`' for s in t.suffixes)} | `{t.media_type}` |"
            f" {t.ragflow_type} | {t.chunk_method or _DATASET_METHOD} | {_cell(t.parsed_into)} |"
            for t in FILE_TYPES
        ),
    ]


DOCS_TABLE = GeneratedTable("api.filetypes", "file-types.md", "file types table", _rows)


if __name__ == "__main__":
    raise SystemExit(DOCS_TABLE.main(sys.argv[1:]))
