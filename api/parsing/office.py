"""Microsoft Office files -> sections: DOCX, XLSX, PPTX and the older binary XLS.

The Office Open XML parsers first refuse an archive that would unpack to more than
PARSE_MAX_UNCOMPRESSED_BYTES (``check_zip``), then read it with their library
(python-docx, openpyxl, python-pptx); XLS is read with xlrd. Libraries are
imported when first needed, so that the web processes never load them.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from api.parsing.chunker import Section
from api.parsing.limits import Limits
from api.parsing.parsers import ParseError, deadline, table_sections, timed

MAX_MEMBERS = 10_000


def check_zip(data: bytes, limits: Limits, kind: str) -> None:
    """Refuse archives whose declared uncompressed size is over the limit (zip
    bombs). zipfile never inflates a member beyond its declared size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(f"the file is not a valid {kind} (zip) archive ({exc})") from None
    total = sum(info.file_size for info in infos)
    if len(infos) > MAX_MEMBERS or total > limits.max_uncompressed_bytes:
        raise ParseError(
            f"the {kind} archive unpacks to {total} bytes in {len(infos)} members, over "
            f"PARSE_MAX_UNCOMPRESSED_BYTES={limits.max_uncompressed_bytes}"
            f" (or {MAX_MEMBERS} members); refusing it"
        )


def _unreadable(kind: str, exc: Exception) -> ParseError:
    return ParseError(f"the {kind} cannot be read ({type(exc).__name__}: {exc})")


def _table_text(table: Any) -> str:
    """A DOCX or PPTX table: one line per row, cells joined by `` | ``."""
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:  # merged cells repeat their text
                cells.append(text)
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def parse_docx(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Paragraphs in order; each table is a chunk of its own, one line per row."""
    check_zip(data, limits, "DOCX")
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except Exception as exc:  # zipfile, lxml and python-docx raise many types for broken files
        raise _unreadable("DOCX", exc) from None
    for block in blocks:
        if isinstance(block, Table):
            text = _table_text(block)
            if text:
                yield Section(text, standalone=True)
        elif block.text.strip():
            yield Section(block.text.strip())


def cell_text(value: object) -> str:
    """A spreadsheet cell's value as text: dates without a midnight time, the rest by str."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def _sheet_rows(sheet: Any, limits: Limits, until: float) -> Iterator[list[str]]:
    # Without the declared dimensions, openpyxl pads each row only to its own last
    # cell, never to a width or height the file merely claims.
    sheet.reset_dimensions()
    for row in timed(sheet.iter_rows(values_only=True), limits, until):
        yield [cell_text(value) for value in row]


def parse_xlsx(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Each sheet as a table: its first row with text is the header; each later row is one
    section of ``header: value`` pairs joined by ``; ``."""
    check_zip(data, limits, "XLSX")
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors of every kind
        raise _unreadable("XLSX", exc) from None
    until = deadline(limits)
    try:
        for sheet in workbook.worksheets:
            try:
                yield from table_sections(_sheet_rows(sheet, limits, until))
            except ParseError:
                raise
            except Exception as exc:
                raise _unreadable(f"sheet {sheet.title!r} of the XLSX", exc) from None
    finally:
        workbook.close()


def _xls_cell(cell: Any, datemode: int) -> str:
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return cell_text(xlrd.xldate.xldate_as_datetime(cell.value, datemode))
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return str(cell.value)
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return cell_text(bool(cell.value))
    if cell.ctype == xlrd.XL_CELL_NUMBER and float(cell.value).is_integer():
        return str(int(cell.value))  # XLS stores every number as a float
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    return str(cell.value)


def parse_xls(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Each sheet as a table, as for XLSX (Excel 97-2003 files, read with xlrd)."""
    import xlrd

    try:
        # ragged rows: each row as long as its own last cell, not padded to the widest
        book = xlrd.open_workbook(file_contents=data, on_demand=True, ragged_rows=True)
    except Exception as exc:  # xlrd raises XLRDError, struct and index errors for broken files
        raise _unreadable("XLS", exc) from None
    until = deadline(limits)
    try:
        for index in range(book.nsheets):
            try:
                sheet = book.sheet_by_index(index)
                rows = (
                    [_xls_cell(cell, book.datemode) for cell in sheet.row(number)]
                    for number in range(sheet.nrows)
                )
                yield from table_sections(timed(rows, limits, until))
            except ParseError:
                raise
            except Exception as exc:
                raise _unreadable(f"sheet {index + 1} of the XLS", exc) from None
            book.unload_sheet(index)
    finally:
        book.release_resources()


def _shape_texts(shapes: Iterable[Any]) -> Iterator[str]:
    """Text of the shapes top to bottom, left to right; groups opened, tables by row."""
    from pptx.shapes.group import GroupShape

    placed = sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))
    for shape in placed:
        if isinstance(shape, GroupShape):
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False) and shape.has_table:
            text = _table_text(shape.table)
            if text:
                yield text
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            for paragraph in shape.text_frame.paragraphs:
                text = " ".join(paragraph.text.split())
                if text:
                    yield text


def parse_pptx(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Each slide is a chunk of its own: its shapes' text top to bottom (tables row by row),
    then its speaker notes."""
    check_zip(data, limits, "PPTX")
    import pptx

    try:
        slides = list(pptx.Presentation(io.BytesIO(data)).slides)
    except Exception as exc:  # zipfile, lxml and python-pptx raise many types for broken files
        raise _unreadable("PPTX", exc) from None
    if len(slides) > limits.max_pages:
        raise ParseError(
            f"the PPTX has {len(slides)} slides, more than PARSE_MAX_PAGES={limits.max_pages}; "
            "split it or raise the limit"
        )
    for number, slide in enumerate(slides, 1):
        try:
            lines = list(_shape_texts(slide.shapes))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                lines.extend(line for line in (notes.text.split("\n") if notes else ()) if line)
        except Exception as exc:
            raise _unreadable(f"slide {number} of the PPTX", exc) from None
        if lines:
            yield Section("\n".join(lines), standalone=True)
