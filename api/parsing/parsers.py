"""File bytes -> sections for the text formats, PDF and the shared table path.

Parsers are pure: bytes and limits in, sections out. A file they cannot read
raises ``ParseError`` with a message for the user; a type with no parser raises
``UnsupportedType``. Neither ever takes the executor down. Which parser reads
which file type is decided in one place: the registry in ``api.filetypes``.
The first paragraph of each parser's docstring is its entry in docs/file-types.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from html.parser import HTMLParser
from typing import TypeVar

from api.parsing.chunker import Section, parse_delimiters, split_text
from api.parsing.limits import Limits


class ParseError(Exception):
    """The file cannot be parsed; the message says why, for the document's progress_msg."""


class UnsupportedType(ParseError):
    """No parser exists for this file type."""


Parser = Callable[[bytes, str, Limits], Iterator[Section]]
T = TypeVar("T")

_MIB = 1024 * 1024


_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\x1b")


def decode_text(data: bytes) -> str:
    """Bytes to text: BOM-marked UTF-8/UTF-16; else UTF-8, where a few invalid
    bytes become U+FFFD; else (many invalid bytes) Windows-1252/Latin-1.
    Content with many control bytes is binary and raises ParseError."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace").replace("\x00", "")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    sample = data[:65536]
    if sample and len(sample) - len(sample.translate(None, _CONTROL)) > len(sample) // 50:
        raise ParseError(
            "the file is not text (it is full of control bytes); "
            "upload it in a supported format or as UTF-8 text"
        )
    try:
        return data.decode("utf-8").replace("\x00", "")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    if text[:65536].count("\ufffd") <= len(sample) // 1000:
        return text.replace("\x00", "")
    return "".join(
        data[i : i + 65536].decode("cp1252", errors="replace") for i in range(0, len(data), 65536)
    ).replace("\x00", "")


def text_sections(text: str, delimiter: str) -> Iterator[Section]:
    """Text split on the delimiters (a parser_config ``delimiter``)."""
    for piece in split_text(text, parse_delimiters(delimiter)):
        yield Section(piece)


def parse_text(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Split on the chunk delimiters (parser_config ``delimiter``)."""
    return text_sections(decode_text(data), delimiter)


_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d{1,9}[.)])\s")
_QUOTE = re.compile(r"^\s{0,3}>")


def _md_kind(line: str) -> str:
    if _QUOTE.match(line):
        return "quote"
    if _LIST_ITEM.match(line):
        return "list"
    return "para"


def parse_markdown(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Its elements: headings, fenced code blocks, lists, quotes, paragraphs."""
    block: list[str] = []
    kind = ""
    fence = ""
    for line in decode_text(data).splitlines():
        if fence:
            block.append(line)
            if line.strip().startswith(fence):
                yield Section("\n".join(block))
                block, fence, kind = [], "", ""
            continue
        opening = _FENCE.match(line)
        if opening or _HEADING.match(line) or not line.strip():
            if block:
                yield Section("\n".join(block))
            block, kind = [], ""
            if opening:
                fence, block = opening.group(1), [line]
            elif line.strip():
                yield Section(line.strip())
            continue
        line_kind = _md_kind(line)
        continuation = kind == "list" and line[:1].isspace()
        if block and line_kind != kind and not continuation:
            yield Section("\n".join(block))
            block = []
        if not continuation:
            kind = line_kind
        block.append(line)
    if block:
        yield Section("\n".join(block))


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "html",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "title",
        "tr",
        "ul",
        "br",
    ]
)
_DROPPED_TAGS = frozenset(("script", "style", "noscript", "template", "head"))


class _HTMLBlocks(HTMLParser):
    """Collects the text of block elements; script/style (and head, except title)
    dropped; table rows become one section with cells joined by `` | ``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self._text: list[str] = []
        self._row: list[str] | None = None
        self._dropped = 0
        self._pre = 0
        self._title = False

    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text = []
        text = raw.strip("\n") if self._pre else " ".join(raw.split())
        if not text.strip():
            return
        if self._row is not None:
            self._row.append(text)
        else:
            self.sections.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._title = True
        if tag in _DROPPED_TAGS:
            self._dropped += 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "tr":
            self._row = []
        elif tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._title = False
        if tag in _DROPPED_TAGS:
            self._dropped = max(self._dropped - 1, 0)
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "tr" and self._row is not None:
            row, self._row = self._row, None
            if row:
                self.sections.append(" | ".join(row))
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)

    def handle_data(self, data: str) -> None:
        if self._title:
            self.sections.append(" ".join(data.split()))
        elif not self._dropped:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_sections(text: str) -> Iterator[Section]:
    """The text of an HTML document's block elements."""
    parser = _HTMLBlocks()
    for start in range(0, len(text), _MIB):
        parser.feed(text[start : start + _MIB])
        yield from (Section(s) for s in parser.sections if s)
        parser.sections = []
    parser.close()
    yield from (Section(s) for s in parser.sections if s)


def parse_html(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """The text of block elements, table rows with cells joined by `` | ``; scripts dropped."""
    return html_sections(decode_text(data))


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_json(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Each item of a top-level array, or each member of a top-level object."""
    try:
        value = json.loads(decode_text(data))
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"the file is not valid JSON ({exc})") from None
    if isinstance(value, list):
        items: list[object] = value
    elif isinstance(value, dict):
        items = [{key: member} for key, member in value.items()]
    else:
        items = [value]
    for item in items:
        yield Section(_compact(item))


def parse_jsonl(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """One section per line, compacted (a line that is not JSON kept as text)."""
    for line in decode_text(data).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield Section(_compact(json.loads(line)))
        except (ValueError, RecursionError):
            yield Section(line)


def timeout_error(limits: Limits) -> ParseError:
    """The error for a document that took longer than PARSE_TIMEOUT."""
    return ParseError(
        f"parsing took longer than PARSE_TIMEOUT={limits.timeout:g}s; "
        "split the file or raise the limit"
    )


def deadline(limits: Limits) -> float:
    """The ``time.monotonic()`` by which a document started now must be parsed."""
    return time.monotonic() + limits.timeout


def timed(items: Iterable[T], limits: Limits, until: float, every: int = 1024) -> Iterator[T]:
    """``items``, checking every ``every`` items that ``until`` (a ``deadline``) has not
    passed: for parsers that may read much without producing a section (the pipeline
    checks the time between sections)."""
    for count, item in enumerate(items, 1):
        if count % every == 0 and time.monotonic() > until:
            raise timeout_error(limits)
        yield item


def table_sections(rows: Iterable[Sequence[str]]) -> Iterator[Section]:
    """The table path (CSV, TSV, spreadsheet sheets): the first row with text is the header;
    each later row is one section of ``header: value`` pairs joined by ``; `` (empty cells
    left out, a cell without a header named ``column N``). A header alone is one section."""
    header: list[str] = []
    rows_seen = 0
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if not header:
            header = [cell.strip() for cell in row]
            continue
        rows_seen += 1
        yield Section(
            "; ".join(
                f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {cell}"
                for i, cell in enumerate(row)
                if cell.strip()
            )
        )
    if header and not rows_seen:
        yield Section("; ".join(name for name in header if name))


def parse_csv(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """A table: the first row with text is the header; each later row is one section of
    ``header: value`` pairs joined by ``; ``."""
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(max(limits.max_bytes, 131072))  # a long cell is data, not an error
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        yield from table_sections(reader)
    except csv.Error as exc:
        raise ParseError(f"the CSV file is malformed at line {reader.line_num} ({exc})") from None


def parse_pdf(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """The lines of text pypdf extracts, page by page (no OCR)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("the PDF is encrypted with a password; upload an unprotected copy")
        pages = len(reader.pages)
    except ParseError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ParseError(f"the PDF cannot be read ({type(exc).__name__}: {exc})") from None
    if pages > limits.max_pages:
        raise ParseError(
            f"the PDF has {pages} pages, more than PARSE_MAX_PAGES={limits.max_pages}; "
            "split it or raise the limit"
        )
    for number in range(pages):
        try:
            text = reader.pages[number].extract_text() or ""
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise ParseError(
                f"page {number + 1} of the PDF cannot be read ({type(exc).__name__}: {exc})"
            ) from None
        for line in text.splitlines():
            if line.strip():
                yield Section(line.strip())
