"""Sample documents generated in the tests: PDF (hand-written, real text
operators), DOCX (python-docx), XLSX (openpyxl), PPTX (python-pptx), e-mail
(the standard library), hostile files (truncated PDF, zip bomb); and ``SAMPLES``,
one sample per registered file type with the chunks it must parse into."""

from __future__ import annotations

import datetime
import io
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF with one Helvetica text line per entry, pages in order."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for index, lines in enumerate(pages):
        page_id = page_ids[index]
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_id + 1} 0 R"
            f" /Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    """A DOCX with the paragraphs, then the table (if any), then a closing paragraph."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
        document.add_paragraph("After the table.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_zip_bomb(uncompressed: int) -> bytes:
    """A zip that looks like a DOCX and inflates to ``uncompressed`` bytes of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(uncompressed >> 20):
                member.write(block)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    """A workbook with one sheet per entry, its rows from A1 on (None: an empty cell)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_xls(sheets: dict[str, list[list[object]]]) -> bytes:
    """An Excel 97-2003 workbook (xlwt), as ``make_xlsx``; datetimes get a date format."""
    import xlwt

    workbook = xlwt.Workbook()
    dates = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM")
    for title, rows in sheets.items():
        sheet = workbook.add_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, datetime.datetime):
                    sheet.write(r, c, value, dates)
                elif value is not None:
                    sheet.write(r, c, value)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_pptx(slides: list[tuple[str, list[str]]], table: list[list[str]] | None = None,
              notes: str = "") -> bytes:  # fmt: skip
    """A presentation: per slide a title and bullet lines; the table (if any) and the
    speaker notes (if any) go on the last slide."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    layout = deck.slide_layouts[1]  # title and content
    for number, (title, lines) in enumerate(slides, 1):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = lines[0] if lines else ""
        for line in lines[1:]:
            body.add_paragraph().text = line
        if number == len(slides):
            if table:
                grid = slide.shapes.add_table(
                    len(table), len(table[0]), Inches(1), Inches(6), Inches(6), Inches(1)
                ).table
                for r, row in enumerate(table):
                    for c, text in enumerate(row):
                        grid.cell(r, c).text = text
            if notes:
                slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_eml(
    subject: str,
    plain: str | None,
    html: str | None = None,
    attachments: dict[str, bytes] | None = None,
) -> bytes:
    """A MIME message from the zoo to the keepers: the plain and/or HTML body (both:
    multipart/alternative) and the attachments."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Zoo <zoo@example.org>"
    message["To"] = "keepers@example.org"
    message["Date"] = "Mon, 02 Mar 2026 09:30:00 +0000"
    if plain is not None:
        message.set_content(plain)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for name, data in (attachments or {}).items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


@dataclass(frozen=True)
class Sample:
    """A file of one registered type and the chunks it parses into (default parser_config)."""

    data: bytes
    chunks: list[str]


_TEXT = Sample(
    b"The aardvark eats termites at night.\nIt digs burrows with strong claws.",
    ["The aardvark eats termites at night.\nIt digs burrows with strong claws."],
)

_SHEETS: dict[str, list[list[object]]] = {
    "Animals": [
        ["animal", "legs", "born"],
        ["Tapir", 4, datetime.datetime(2019, 5, 1)],
        [None, None, None],
        ["Emu", 2, None],
    ],
    "Keepers": [["keeper", "shift"], ["Ada", "night"]],
}

_SHEET_CHUNKS = [
    "animal: Tapir; legs: 4; born: 2019-05-01\nanimal: Emu; legs: 2\nkeeper: Ada; shift: night"
]

# One sample per FileType name in api.filetypes.FILE_TYPES (tests check the two agree).
SAMPLES: dict[str, Sample] = {
    "PDF": Sample(
        make_pdf([["Axolotls regenerate their limbs."], ["They stay aquatic adults."]]),
        ["Axolotls regenerate their limbs.\nThey stay aquatic adults."],
    ),
    "Word document": Sample(
        make_docx(["Quokkas smile for photographs."], [["island", "Rottnest"]]),
        ["Quokkas smile for photographs.", "island | Rottnest", "After the table."],
    ),
    "Excel workbook": Sample(
        make_xlsx(_SHEETS),
        _SHEET_CHUNKS,
    ),
    "Excel 97-2003 workbook": Sample(
        make_xls(_SHEETS),
        _SHEET_CHUNKS,
    ),
    "PowerPoint presentation": Sample(
        make_pptx(
            [("Okapi facts", ["Okapis live in the Ituri forest."]), ("Diet", ["Leaves", "Fungi"])],
            table=[["meal", "time"], ["leaves", "dawn"]],
            notes="Mention the giraffe family.",
        ),
        [
            "Okapi facts\nOkapis live in the Ituri forest.",
            "Diet\nLeaves\nFungi\nmeal | time\nleaves | dawn\nMention the giraffe family.",
        ],
    ),
    "E-mail": Sample(
        make_eml(
            "Feeding plan",
            "Feed the tapirs at noon.\nCheck the emu pen.",
            "<p>Feed the <b>tapirs</b> at noon.</p>",
            {"plan.xlsx": b"PK", "map.pdf": b"%PDF"},
        ),
        [
            "Subject: Feeding plan\nFrom: Zoo <zoo@example.org>\nTo: keepers@example.org"
            "\nDate: Mon, 02 Mar 2026 09:30:00 +0000"
            "\nFeed the tapirs at noon.\nCheck the emu pen.\nAttachments: plan.xlsx, map.pdf"
        ],
    ),
    "CSV": Sample(
        b"name,habitat\r\nTapir,forest\r\nYak,mountains\r\n",
        ["name: Tapir; habitat: forest\nname: Yak; habitat: mountains"],
    ),
    "TSV": Sample(
        b"name\thabitat\nTapir\tforest\nYak\tmountains\n",
        ["name: Tapir; habitat: forest\nname: Yak; habitat: mountains"],
    ),
    "Markdown": Sample(
        b"# Pangolin guide\n\nPangolins roll into a ball when threatened.\n\n- scales\n- tongue",
        ["# Pangolin guide\nPangolins roll into a ball when threatened.\n- scales\n- tongue"],
    ),
    "HTML": Sample(
        b"<html><head><script>var x = 'scriptword';</script></head><body>"
        b"<h1>Okapi</h1><p>The okapi lives in the Ituri rainforest.</p></body></html>",
        ["Okapi\nThe okapi lives in the Ituri rainforest."],
    ),
    "JSON": Sample(
        b'[{"animal": "tapir", "legs": 4}, {"animal": "emu"}]',
        ['{"animal":"tapir","legs":4}\n{"animal":"emu"}'],
    ),
    "JSON Lines": Sample(
        b'{"animal": "tapir"}\n\n{"animal": "emu"}\n',
        ['{"animal":"tapir"}\n{"animal":"emu"}'],
    ),
    "Plain text": _TEXT,
    "Source code": _TEXT,
    "Configuration and data text": _TEXT,
}
