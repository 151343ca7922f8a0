"""Each parser, the pipeline and its limits, on sample files generated here."""

from __future__ import annotations

import email
import io
import json
import re
import time
import zipfile
from datetime import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.sample_files import (
    make_docx,
    make_eml,
    make_pdf,
    make_pptx,
    make_xls,
    make_xlsx,
    make_zip_bomb,
)
from support.slow_sections.sitecustomize import slowed

from api import filetypes
from api.config import ConfigError
from api.parsing import limits as parse_limits
from api.parsing import pipeline
from api.parsing.limits import Limits
from api.parsing.mail import parse_eml
from api.parsing.office import parse_docx, parse_pptx, parse_xls, parse_xlsx
from api.parsing.parsers import (
    ParseError,
    Parser,
    deadline,
    decode_text,
    parse_csv,
    parse_html,
    parse_json,
    parse_jsonl,
    parse_markdown,
    parse_pdf,
    parse_text,
    timed,
)
from api.parsing.pipeline import build_chunks, chunk_settings

LIMITS = Limits()


def texts(sections: object) -> list[str]:
    return [s.text for s in sections]  # type: ignore[attr-defined]


def test_text_is_split_on_the_delimiter() -> None:
    data = b"first line\n\nsecond line\nthird; part"
    assert texts(parse_text(data, "\n", LIMITS)) == ["first line", "second line", "third; part"]
    assert texts(parse_text(data, r"\n;", LIMITS)) == [
        "first line",
        "second line",
        "third;",
        "part",
    ]


def test_invalid_utf8_falls_back_to_windows_1252() -> None:
    assert texts(parse_text(b"caf\xe9 cr\x80me\nnext", "\n", LIMITS)) == ["café cr€me", "next"]


def test_a_stray_invalid_byte_in_utf8_is_replaced() -> None:
    data = "é".encode() * 2000 + b"\xff"
    assert decode_text(data) == "é" * 2000 + "\ufffd"


def test_boms_are_honoured() -> None:
    assert decode_text("\ufeffhé".encode()) == "hé"
    assert decode_text("hé\nx".encode("utf-16")) == "hé\nx"


def test_binary_content_is_refused() -> None:
    with pytest.raises(ParseError, match="not text"):
        decode_text(bytes(range(256)) * 64)
    with pytest.raises(ParseError, match="not text"):
        decode_text(b"\x00\x01\x02abc" * 100)


def test_markdown_elements() -> None:
    md = (
        b"# Title\n\nPara one\ncontinues\n\n- item 1\n- item 2\n  more of 2\n\n"
        b"> quoted\n> still\n\n```python\ncode()\n\n# comment, not a heading\n```\nafter\n"
    )
    assert texts(parse_markdown(md, "\n", LIMITS)) == [
        "# Title",
        "Para one\ncontinues",
        "- item 1\n- item 2\n  more of 2",
        "> quoted\n> still",
        "```python\ncode()\n\n# comment, not a heading\n```",
        "after",
    ]


def test_html_blocks_without_script_and_style() -> None:
    html = (
        b"<html><head><title>The title</title><style>p{color:red}</style>"
        b"<script>alert('x')</script></head><body><h1>Heading</h1>"
        b"<p>Some <b>bold</b>\n text &amp; more</p><script>var hidden=1;</script>"
        b"<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>"
        b"<ul><li>one</li><li>two</li></ul><pre>  keep\n  spacing</pre></body></html>"
    )
    assert texts(parse_html(html, "\n", LIMITS)) == [
        "The title",
        "Heading",
        "Some bold text & more",
        "k | v",
        "a | 1",
        "one",
        "two",
        "  keep\n  spacing",
    ]


def test_json_array_and_object() -> None:
    assert texts(parse_json(b'[{"a": 1}, "x", 3]', "\n", LIMITS)) == ['{"a":1}', '"x"', "3"]
    assert texts(parse_json('{"k": [1, 2], "m": "é"}'.encode(), "\n", LIMITS)) == [
        '{"k":[1,2]}',
        '{"m":"é"}',
    ]
    with pytest.raises(ParseError, match="not valid JSON"):
        list(parse_json(b"{broken", "\n", LIMITS))


def test_jsonl_lines_bad_lines_kept_as_text() -> None:
    data = b'{"a": 1}\n\nnot json\n[1,2]\n'
    assert texts(parse_jsonl(data, "\n", LIMITS)) == ['{"a":1}', "not json", "[1,2]"]


def test_csv_rows_with_headers() -> None:
    data = b"name,city\nAda,London\nLinus,\n,,\n"
    assert texts(parse_csv(data, "\n", LIMITS)) == ["name: Ada; city: London", "name: Linus"]


def test_csv_long_cells_are_kept() -> None:
    cell = "x" * 300_000
    assert texts(parse_csv(f"a,b\n1,{cell}\n".encode(), "\n", LIMITS)) == [f"a: 1; b: {cell}"]


def test_a_cell_over_the_field_limit_fails_cleanly() -> None:
    data = b"a,b\n1," + b"x" * 200_000 + b"\n"
    with pytest.raises(ParseError, match="malformed at line 2"):
        list(parse_csv(data, "\n", Limits(max_bytes=131_072)))


def test_pdf_lines_in_page_order() -> None:
    pdf = make_pdf([["Hello (world)", "Second line"], ["Page two"]])
    assert texts(parse_pdf(pdf, "\n", LIMITS)) == ["Hello (world)", "Second line", "Page two"]


def test_truncated_pdf_fails_cleanly() -> None:
    pdf = make_pdf([["Hello"]])
    with pytest.raises(ParseError, match="PDF"):
        list(parse_pdf(pdf[: len(pdf) // 2], "\n", LIMITS))


def test_pdf_page_limit() -> None:
    pdf = make_pdf([["a"], ["b"], ["c"]])
    with pytest.raises(ParseError, match="PARSE_MAX_PAGES=2"):
        list(parse_pdf(pdf, "\n", Limits(max_pages=2)))


def test_docx_paragraphs_and_tables_as_own_sections() -> None:
    data = make_docx(["Intro", "Second"], [["k", "v"], ["a", "1"]])
    sections = list(parse_docx(data, "\n", LIMITS))
    assert texts(sections) == ["Intro", "Second", "k | v\na | 1", "After the table."]
    assert [s.standalone for s in sections] == [False, False, True, False]


def test_not_a_zip_docx_fails_cleanly() -> None:
    with pytest.raises(ParseError, match="not a valid DOCX"):
        list(parse_docx(b"PK\x03\x04garbage", "\n", LIMITS))


def test_csv_header_alone_and_blank_rows() -> None:
    assert texts(parse_csv(b"name,,city\n\n,,\n", "\n", LIMITS)) == ["name; city"]
    assert texts(parse_csv(b"a,b\n,\n1,\n", "\n", LIMITS)) == ["a: 1"]


def test_xlsx_sheets_become_tables_with_typed_cells() -> None:
    data = make_xlsx(
        {
            "One": [
                ["when", "count", "ok", "ratio"],
                [None] * 4,
                [dt(2024, 1, 2, 3, 4), 7, True, 0.5],
            ],
            "Two": [[None, "only"], [None, "x"]],
            "Empty": [],
        }
    )
    assert texts(parse_xlsx(data, "\n", LIMITS)) == [
        "when: 2024-01-02 03:04:00; count: 7; ok: TRUE; ratio: 0.5",
        "only: x",
    ]


def test_xlsx_with_a_claimed_huge_dimension_reads_only_its_cells() -> None:
    """A sheet that declares A1:XFD1048576, with a cell in its last row, is not padded to
    17 billion cells: the rows in between are empty, not 16384 columns wide."""
    data = make_xlsx({"S": [["h"], ["v"], [None], [None], [None], [None], ["w"]]})
    patched = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(patched, "w") as out:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.startswith("xl/worksheets/"):
                body = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', body)
                body = body.replace(b'r="7"', b'r="1048576"').replace(b'r="A7"', b'r="A1048576"')
                assert body.count(b"1048576") == 3, body
            out.writestr(info, body)
    started = time.monotonic()
    assert texts(parse_xlsx(patched.getvalue(), "\n", LIMITS)) == ["h: v", "h: w"]
    assert time.monotonic() - started < 5


def test_timed_stops_a_long_read_at_the_deadline() -> None:
    limits = Limits(timeout=5)
    assert list(timed(range(3000), limits, deadline(limits))) == list(range(3000))
    with pytest.raises(ParseError, match="PARSE_TIMEOUT=5s"):
        list(timed(range(3000), limits, time.monotonic() - 1))


def test_xls_numbers_dates_and_booleans_read_as_written() -> None:
    data = make_xls({"S": [["n", "f", "when", "ok"], [3, 2.5, dt(2020, 2, 29, 13, 30), True]]})
    assert texts(parse_xls(data, "\n", LIMITS)) == [
        "n: 3; f: 2.5; when: 2020-02-29 13:30:00; ok: TRUE"
    ]


def test_broken_xls_fails_cleanly() -> None:
    with pytest.raises(ParseError, match="the XLS cannot be read"):
        list(parse_xls(b"\xd0\xcf\x11\xe0 truncated", "\n", LIMITS))
    with pytest.raises(ParseError, match="the XLS cannot be read"):
        list(parse_xls(make_xlsx({"S": [["a"]]}), "\n", LIMITS))


@pytest.mark.parametrize("parser", [parse_docx, parse_xlsx, parse_pptx])
def test_office_zip_bombs_are_refused_before_inflating(parser: Parser) -> None:
    bomb = make_zip_bomb(80 << 20)
    started = time.monotonic()
    with pytest.raises(ParseError, match="PARSE_MAX_UNCOMPRESSED_BYTES"):
        list(parser(bomb, "\n", LIMITS))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("parser", "kind"), [(parse_xlsx, "XLSX"), (parse_pptx, "PPTX")])
def test_broken_office_files_fail_cleanly(parser: Parser, kind: str) -> None:
    with pytest.raises(ParseError, match=f"not a valid {kind}"):
        list(parser(b"PK\x03\x04 not really", "\n", LIMITS))
    docx = make_docx(["a Word file under the wrong name"])
    with pytest.raises(ParseError, match=f"the {kind} cannot be read"):
        list(parser(docx, "\n", LIMITS))


def test_pptx_slides_are_chunks_of_their_own() -> None:
    data = make_pptx([("Title", ["one", "two"]), ("Empty", [])], notes="say hi")
    sections = list(parse_pptx(data, "\n", LIMITS))
    assert texts(sections) == ["Title\none\ntwo", "Empty\nsay hi"]
    assert all(s.standalone for s in sections)
    with pytest.raises(ParseError, match="2 slides, more than PARSE_MAX_PAGES=1"):
        list(parse_pptx(data, "\n", Limits(max_pages=1)))


def test_pptx_grouped_shapes_are_read() -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(2), Inches(2), Inches(1)).text_frame.text = "lower"
    slide.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1)).text_frame.text = "upper"
    out = io.BytesIO()
    deck.save(out)
    assert texts(parse_pptx(out.getvalue(), "\n", LIMITS)) == ["upper\nlower"]


def test_eml_html_only_body_and_inline_attachments() -> None:
    data = make_eml("Hi", None, "<p>First</p><script>x()</script><p>Second</p>", {"a.bin": b"1"})
    assert texts(parse_eml(data, "\n", LIMITS)) == [
        "Subject: Hi\nFrom: Zoo <zoo@example.org>\nTo: keepers@example.org\n"
        "Date: Mon, 02 Mar 2026 09:30:00 +0000",
        "First",
        "Second",
        "Attachments: a.bin",
    ]


def test_eml_encoded_headers_charsets_and_forwarded_messages() -> None:
    inner = make_eml("Inner", "forwarded body")
    message = EmailMessage()
    message["Subject"] = "Grüße"  # RFC 2047-encoded on the wire
    message.set_content("Caf\u00e9 au lait", charset="iso-8859-1")
    message.add_attachment(email.message_from_bytes(inner), disposition="inline")
    data = message.as_bytes()
    assert b"Gr\xc3\xbc" not in data.split(b"\n\n", 1)[0]
    assert texts(parse_eml(data, "\n", LIMITS)) == [
        "Subject: Grüße",
        "Café au lait",
        "forwarded body",
    ]


def test_eml_nesting_is_bounded() -> None:
    body = "x"
    for depth in range(40):
        mark = f"b{depth}"
        body = f'Content-Type: multipart/mixed; boundary="{mark}"\n\n--{mark}\n{body}\n--{mark}--'
    with pytest.raises(ParseError, match="more than 32 deep"):
        list(parse_eml(f"Subject: deep\n{body}".encode(), "\n", LIMITS))


def test_text_that_is_not_an_email_still_parses_as_one() -> None:
    assert texts(parse_eml(b"just a line\nand another", "\n", LIMITS)) == [
        "just a line",
        "and another",
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, (512, "\n")),
        ({"chunk_token_num": 64, "delimiter": "。"}, (64, "。")),
        ({"chunk_token_num": 0, "delimiter": ""}, (512, "\n")),
        ({"chunk_token_num": True, "delimiter": 5}, (512, "\n")),
        ({"chunk_token_num": 4096}, (512, "\n")),
    ],
)
def test_chunk_settings(config: dict[str, object], expected: tuple[int, str]) -> None:
    assert chunk_settings(config) == expected


def test_pipeline_builds_chunks_within_budget(tmp_path: Path) -> None:
    path = tmp_path / "doc"
    path.write_bytes(("\n".join(f"line number {i} of the text" for i in range(200))).encode())
    calls: list[int] = []
    chunks = build_chunks(
        path,
        suffix="txt",
        parser_config={"chunk_token_num": 32},
        limits=LIMITS,
        checkpoint=calls.append,
    )
    assert calls == list(range(1, 201))
    assert all(0 < c["token_count"] <= 32 for c in chunks)
    assert "\n".join(c["content"] for c in chunks).split("\n") == [
        f"line number {i} of the text" for i in range(200)
    ]


def test_pipeline_empty_file_gives_no_chunks(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert build_chunks(path, suffix="md", parser_config={}, limits=LIMITS) == []


def test_pipeline_refuses_files_over_the_size_cap_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as handle:  # a 100 MB single line (sparse file: cheap to make)
        handle.truncate(100 * 1024 * 1024)
    with pytest.raises(ParseError, match="PARSE_MAX_BYTES"):
        build_chunks(path, suffix="txt", parser_config={}, limits=LIMITS)


def test_pipeline_chunk_cap(tmp_path: Path) -> None:
    path = tmp_path / "many"
    path.write_bytes(b"\n".join(b"line %d" % i for i in range(50)))
    with pytest.raises(ParseError, match="PARSE_MAX_CHUNKS=3"):
        build_chunks(
            path,
            suffix="txt",
            parser_config={"chunk_token_num": 2},
            limits=Limits(max_chunks=3),
        )


def test_pipeline_timeout_between_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "slow"
    path.write_bytes(b"a\nb\nc\nd\n")
    monkeypatch.setattr(pipeline, "parser_for", slowed(filetypes.parser_for, 0.15))
    with pytest.raises(ParseError, match="PARSE_TIMEOUT"):
        build_chunks(path, suffix="txt", parser_config={}, limits=Limits(timeout=0.2))


def test_pipeline_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="missing"):
        build_chunks(tmp_path / "gone", suffix="txt", parser_config={}, limits=LIMITS)


def test_limits_from_environment() -> None:
    loaded = parse_limits.load({"PARSE_MAX_BYTES": "1000", "PARSE_TIMEOUT": "3"})
    assert loaded.max_bytes == 1000
    assert loaded.timeout == 3
    assert parse_limits.load({}) == Limits()
    with pytest.raises(ConfigError, match="PARSE_MAX_PAGES='lots': invalid; accepted: an integer"):
        parse_limits.load({"PARSE_MAX_PAGES": "lots"})
    with pytest.raises(ConfigError, match="PARSE_TIMEOUT='0': invalid; accepted: an integer from"):
        parse_limits.load({"PARSE_TIMEOUT": "0"})


def test_json_chunks_keep_valid_json_when_small(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"id": i, "name": f"item {i}"} for i in range(3)]))
    chunks = build_chunks(path, suffix="json", parser_config={}, limits=LIMITS)
    assert [json.loads(line) for line in chunks[0]["content"].split("\n")] == [
        {"id": i, "name": f"item {i}"} for i in range(3)
    ]
