"""File bytes -> sections, one parser per file type, chosen by suffix in ``PARSERS``.

Parsers are pure: bytes and limits in, sections out. A file they cannot read
raises ``ParseError`` with a message for the user; a type with no parser raises
``UnsupportedType``. Neither ever takes the executor down.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from html.parser import HTMLParser

from api.parsing.chunker import Section, parse_delimiters, split_text
from api.parsing.limits import Limits


class ParseError(Exception):
    """The file cannot be parsed; the message says why, for the document's progress_msg."""


class UnsupportedType(ParseError):
    """No parser exists for this file type."""


Parser = Callable[[bytes, str, Limits], Iterator[Section]]

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


def parse_text(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """Plain text and source code: split on the delimiters."""
    for piece in split_text(decode_text(data), parse_delimiters(delimiter)):
        yield Section(piece)


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
    """Markdown elements: headings, fenced code blocks, lists, quotes, paragraphs."""
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


def parse_html(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """HTML: the text of block elements; script and style dropped."""
    parser = _HTMLBlocks()
    text = decode_text(data)
    for start in range(0, len(text), _MIB):
        parser.feed(text[start : start + _MIB])
        yield from (Section(s) for s in parser.sections if s)
        parser.sections = []
    parser.close()
    yield from (Section(s) for s in parser.sections if s)


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_json(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """JSON: each item of a top-level array, or each member of a top-level object."""
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
    """JSON Lines: one section per line (invalid lines kept as text)."""
    for line in decode_text(data).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield Section(_compact(json.loads(line)))
        except (ValueError, RecursionError):
            yield Section(line)


def parse_csv(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """CSV/TSV: one section per row, ``header: value`` pairs joined by ``; ``."""
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(max(limits.max_bytes, 131072))  # a long cell is data, not an error
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header: list[str] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if not header:
                header = [cell.strip() for cell in row]
                continue
            pairs = [
                f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {cell}"
                for i, cell in enumerate(row)
                if cell.strip()
            ]
            yield Section("; ".join(pairs))
    except csv.Error as exc:
        raise ParseError(f"the CSV file is malformed at line {reader.line_num} ({exc})") from None
    if header and reader.line_num <= 1:
        yield Section("; ".join(header))


def parse_pdf(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """PDF: the lines of text pypdf extracts, page by page (no OCR)."""
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


def check_zip(data: bytes, limits: Limits) -> None:
    """Refuse archives whose declared uncompressed size is over the limit (zip
    bombs). zipfile never inflates a member beyond its declared size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(f"the file is not a valid DOCX (zip) archive ({exc})") from None
    total = sum(info.file_size for info in infos)
    if len(infos) > 10_000 or total > limits.max_uncompressed_bytes:
        raise ParseError(
            f"the DOCX archive unpacks to {total} bytes in {len(infos)} members, over "
            f"PARSE_MAX_UNCOMPRESSED_BYTES={limits.max_uncompressed_bytes}; refusing it"
        )


def _table_text(table: object) -> str:
    lines: list[str] = []
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or cells[-1] != text:  # merged cells repeat their text
                cells.append(text)
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def parse_docx(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """DOCX: paragraphs in order; each table becomes a section (and chunk) of its own."""
    check_zip(data, limits)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except Exception as exc:  # zipfile, lxml and python-docx raise many types for broken files
        raise ParseError(f"the DOCX cannot be read ({type(exc).__name__}: {exc})") from None
    for block in blocks:
        if isinstance(block, Table):
            text = _table_text(block)
            if text:
                yield Section(text, standalone=True)
        elif block.text.strip():
            yield Section(block.text.strip())


TEXT_SUFFIXES = frozenset(
    [
        "txt",
        "text",
        "log",
        "py",
        "pyi",
        "js",
        "mjs",
        "cjs",
        "jsx",
        "ts",
        "tsx",
        "java",
        "c",
        "cc",
        "cpp",
        "cxx",
        "h",
        "hh",
        "hpp",
        "hxx",
        "cs",
        "go",
        "rs",
        "rb",
        "php",
        "pl",
        "pm",
        "sh",
        "bash",
        "zsh",
        "ps1",
        "bat",
        "sql",
        "kt",
        "kts",
        "swift",
        "scala",
        "lua",
        "r",
        "m",
        "mm",
        "dart",
        "vue",
        "svelte",
        "css",
        "scss",
        "less",
        "xml",
        "yml",
        "yaml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "properties",
        "env",
        "rst",
        "tex",
        "srt",
        "vtt",
    ]
)

PARSERS: dict[str, Parser] = {
    **dict.fromkeys(TEXT_SUFFIXES, parse_text),
    "md": parse_markdown,
    "markdown": parse_markdown,
    "mdx": parse_markdown,
    "html": parse_html,
    "htm": parse_html,
    "json": parse_json,
    "jsonl": parse_jsonl,
    "ndjson": parse_jsonl,
    "csv": parse_csv,
    "tsv": parse_csv,
    "pdf": parse_pdf,
    "docx": parse_docx,
}


def parser_for(suffix: str) -> Parser:
    """The parser for a file suffix (without dot, any case)."""
    parser = PARSERS.get(suffix.lower().lstrip("."))
    if parser is None:
        known = ", ".join(sorted(("txt", "md", "html", "json", "jsonl", "csv", "pdf", "docx")))
        raise UnsupportedType(
            f"parsing .{suffix.lower().lstrip('.')} files is not supported by this server "
            f"(supported: {known} and source code); convert the file and upload it again"
        )
    return parser
