"""Word tokens shared by token counting, the full-text query and highlighting."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from api.parsing.tokens import count_tokens

__all__ = ["ASCII_WORD", "WORD", "count_tokens", "norm", "query_terms", "tokens"]

# A word is a run of letters/digits; each CJK ideograph or kana is a word of its own.
WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
    ]
)


def norm(word: str) -> str:
    """A word as indexed: lower case, diacritics removed (like FTS5 remove_diacritics)."""
    if word.isascii():  # NFKD leaves ASCII unchanged and it has no combining marks
        return word.lower()
    return _norm_short(word) if len(word) <= 32 else _norm_unicode(word)


def _norm_unicode(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# CJK ideographs and kana are one-character words: most non-ASCII words repeat a lot
_norm_short = lru_cache(maxsize=16_384)(_norm_unicode)


# In lower-cased ASCII text a word is a run of these, and normalising it changes nothing.
ASCII_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Normalised word tokens of ``text``, in order."""
    if text.isascii():
        return ASCII_WORD.findall(text.lower())
    return [norm(m.group(0)) for m in WORD.finditer(text)]


def query_terms(question: str) -> list[str]:
    """Distinct search terms of a question; stopwords are dropped unless nothing else is left."""
    seen: dict[str, None] = {}
    for word in tokens(question):
        seen.setdefault(word, None)
    terms = [t for t in seen if t not in STOPWORDS]
    return terms or list(seen)
