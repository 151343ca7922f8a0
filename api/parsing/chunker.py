"""The "naive" chunking method: sections in, chunks of at most N tokens out.

Sections are appended to the current chunk while it stays within
``chunk_token_num`` tokens. A section that is itself over the limit is split
further: on the delimiters first, then into token windows. Standalone sections
(DOCX tables) always form chunks of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from api.parsing.tokens import count_tokens, windows

DEFAULT_DELIMITER = "\n"
DEFAULT_CHUNK_TOKEN_NUM = 512
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "`": "`"}


@dataclass(frozen=True)
class Section:
    text: str
    standalone: bool = False


def decode_escapes(raw: str) -> str:
    """``\\n``, ``\\t``, ``\\r``, ``\\\\`` and ``\\``` typed as two characters become
    the character; any other backslash is kept as it is."""
    return re.sub(r"\\([ntr\\`])", lambda m: _ESCAPES[m.group(1)], raw)


def parse_delimiters(delimiter: str) -> list[str]:
    """Each character of ``delimiter`` is one delimiter, text in backticks is one
    multi-character delimiter; escapes are decoded. Longest first."""
    found: set[str] = set()
    rest: list[str] = []
    for m in re.finditer(r"`([^`]+)`|(.)", delimiter, flags=re.DOTALL):
        if m.group(1) is not None:
            found.add(decode_escapes(m.group(1)))
        else:
            rest.append(m.group(2))
    found.update(decode_escapes("".join(rest)))
    found.discard("")
    return sorted(found, key=lambda d: (-len(d), d))


def split_text(text: str, delimiters: list[str]) -> Iterator[str]:
    """Split on the delimiters. A single-character visible delimiter (``.``, ``;``,
    ``。``) stays at the end of its piece; whitespace and multi-character
    delimiters are dropped. Pieces are stripped; empty pieces skipped."""
    if not delimiters:
        piece = text.strip()
        if piece:
            yield piece
        return
    pattern = re.compile("|".join(re.escape(d) for d in delimiters))
    start = 0
    for m in pattern.finditer(text):
        keep = len(m.group()) == 1 and not m.group().isspace()
        piece = text[start : m.end() if keep else m.start()].strip()
        if piece:
            yield piece
        start = m.end()
    piece = text[start:].strip()
    if piece:
        yield piece


def _fit(text: str, limit: int, delimiters: list[str]) -> Iterator[tuple[str, int]]:
    """``text`` as pieces of at most ``limit`` tokens each, with their counts."""
    tokens = count_tokens(text)
    if tokens <= limit:
        yield text, tokens
        return
    pieces = list(split_text(text, delimiters)) if delimiters else [text]
    if len(pieces) <= 1:
        yield from windows(text, limit)
        return
    for piece in pieces:
        yield from _fit(piece, limit, [])


def merge(
    sections: Iterable[Section],
    chunk_token_num: int = DEFAULT_CHUNK_TOKEN_NUM,
    delimiter: str = DEFAULT_DELIMITER,
) -> Iterator[tuple[str, int]]:
    """Chunks as ``(content, token_count)``, in document order."""
    if chunk_token_num < 1:
        raise ValueError(f"chunk_token_num must be at least 1, got {chunk_token_num}")
    delimiters = parse_delimiters(delimiter)
    current: list[str] = []
    current_tokens = 0
    for section in sections:
        for text, tokens in _fit(section.text, chunk_token_num, delimiters):
            if current and (section.standalone or current_tokens + tokens > chunk_token_num):
                yield "\n".join(current), current_tokens
                current, current_tokens = [], 0
            current.append(text)
            current_tokens += tokens
        if section.standalone and current:
            yield "\n".join(current), current_tokens
            current, current_tokens = [], 0
    if current:
        yield "\n".join(current), current_tokens
