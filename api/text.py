"""Word tokens shared by token counting, the full-text query and highlighting."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from api.parsing.tokens import count_tokens

__all__ = [
    "ASCII_WORD",
    "SEARCH_PER_TERM_UP_TO",
    "WORD",
    "count_tokens",
    "norm",
    "query_terms",
    "title",
    "tokens",
    "whole_word",
]

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


# Up to this many terms, ASCII text is searched once per term (a fast literal scan each); with
# more, splitting it into words once is cheaper (measured at about 8 terms).
SEARCH_PER_TERM_UP_TO = 8


@lru_cache(maxsize=4096)
def whole_word(term: str) -> re.Pattern[str]:
    """``term`` (an ASCII word) as a whole word of lower-cased ASCII text, whose words are
    exactly its [a-z0-9]+ runs: the term, then "not preceded by a letter or digit" (a leading
    lookbehind would lose the regex engine's fast literal scan: 4x slower, measured). Cached:
    a request compiles at most SEARCH_PER_TERM_UP_TO of them, none for terms seen before."""
    return re.compile(rf"{term}(?![a-z0-9])(?<![a-z0-9]{term})")


def tokens(text: str) -> list[str]:
    """Normalised word tokens of ``text``, in order."""
    if text.isascii():
        return ASCII_WORD.findall(text.lower())
    return [norm(m.group(0)) for m in WORD.finditer(text)]


def title(name: str) -> str:
    """The title a document name gives its chunks: the name without its file extension."""
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def query_terms(question: str) -> list[str]:
    """Distinct search terms of a question; stopwords are dropped unless nothing else is left."""
    seen: dict[str, None] = {}
    for word in tokens(question):
        seen.setdefault(word, None)
    terms = [t for t in seen if t not in STOPWORDS]
    return terms or list(seen)
