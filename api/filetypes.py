"""File types RAGFlow accepts, decided by the file name's extension."""

from __future__ import annotations

import re

_PDF = re.compile(r".*\.pdf$")
_DOC = re.compile(
    r".*\.(eml|doc|docx|ppt|pptx|yml|yaml|xml|htm|json|jsonl|ldjson|csv|txt|ini|xls|xlsx|wps|"
    r"rtf|hlp|pages|numbers|key|md|mdx|py|js|java|c|cpp|h|php|go|ts|sh|cs|kt|html|sql|msg|"
    r"tsv|log|rs|rb|swift|scala|tsx|jsx|css|toml)$"
)
_AURAL = re.compile(r".*\.(wav|flac|ape|alac|wavpack|wv|mp3|aac|ogg|vorbis|opus|m4a)$")
_VISUAL = re.compile(
    r".*\.(jpg|jpeg|png|tif|tiff|gif|pcx|tga|exif|fpx|svg|psd|cdr|pcd|dxf|ufo|eps|ai|raw|wmf|"
    r"webp|avif|apng|icon|ico|bmp|mpg|mpeg|avi|rm|rmvb|mov|wmv|asf|dat|asx|wvx|mpe|mpa|mp4)$"
)


def file_type(name: str) -> str | None:
    """pdf, doc, aural or visual; None when the type is not supported."""
    lowered = name.lower()
    for kind, pattern in (("pdf", _PDF), ("doc", _DOC), ("aural", _AURAL), ("visual", _VISUAL)):
        if pattern.fullmatch(lowered):
            return kind
    return None


def suffix(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def chunk_method_for(name: str, kind: str, dataset_method: str) -> str:
    """RAGFlow picks the parser by type for pictures, audio, slides and e-mail."""
    ext = suffix(name)
    if kind == "visual":
        return "picture"
    if kind == "aural":
        return "audio"
    if ext in ("ppt", "pptx", "pages"):
        return "presentation"
    if ext in ("eml", "msg"):
        return "email"
    return dataset_method
