"""Local token counting (no model download): an approximation of a BPE tokenizer.

A run of letters counts one token per started 6 letters, a run of digits one per
started 3 digits, each CJK character and each other symbol one token.
Whitespace is free. ``windows`` cuts text into pieces of at most N tokens while
reading it lazily, so a 100 MB line never becomes a list of tokens in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W\d_]){{1,6}}|\d{{1,3}}|[^\s]")


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(_TOKEN.findall(text))  # the pattern has no groups: one string per token


def windows(text: str, max_tokens: int) -> Iterator[tuple[str, int]]:
    """Consecutive pieces of ``text`` of at most ``max_tokens`` tokens each, cut at
    token boundaries and stripped, with their token counts; empty pieces skipped."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    start = 0
    count = 0
    for match in _TOKEN.finditer(text):
        if count == max_tokens:
            yield text[start : match.start()].strip(), count
            start = match.start()
            count = 0
        count += 1
    if count:
        yield text[start:].strip(), count
