"""PostgreSQL's full-text index of chunks: a weighted tsvector of the words api.text finds (no
PostgreSQL parser: both backends index the same words), stored in ``chunks.fts`` under a GIN
index, and the queries that find candidates in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import text

# The weighted vector of a chunk from the words api.text finds (no PostgreSQL parser: both
# backends index the same words): content D, title C, keywords B, questions A. Each group has its
# own position (1-4): PostgreSQL keeps a weight only on a position, and a lexeme without one
# would match a query restricted to the content's weight (`'word':D`) from any group.
FTS_VALUE = "?::tsvector"
_GROUPS = ((1, "D"), (2, "C"), (3, "B"), (4, "A"))


LEXEME_BYTES = 2046  # PostgreSQL's longest lexeme, in UTF-8 bytes


def fit_lexeme(word: str) -> str:
    """The word as PostgreSQL can index and query it: its first LEXEME_BYTES bytes (whole
    characters). Index and queries cut alike, so a longer word still finds itself."""
    data = word.encode("utf-8")
    return word if len(data) <= LEXEME_BYTES else data[:LEXEME_BYTES].decode("utf-8", "ignore")


def _lexeme(word: str) -> str:
    """A word as a quoted tsvector or tsquery lexeme (cut to fit, quotes and backslashes
    doubled)."""
    return "'" + fit_lexeme(word).replace("\\", "\\\\").replace("'", "''") + "'"


def fts_words(content: str, docnm: str, keywords: Any, questions: Any) -> str:
    """The parameter of FTS_VALUE: the tsvector text of the four word groups."""

    def words(value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        return list(dict.fromkeys(text.tokens(str(value or ""))))

    positions: dict[str, list[str]] = {}
    for (position, weight), group in zip(
        _GROUPS,
        (words(content), words(text.title(docnm)), words(keywords), words(questions)),
        strict=True,
    ):
        for word in group:
            positions.setdefault(word, []).append(f"{position}{weight}")
    return " ".join(f"{_lexeme(w)}:{','.join(p)}" for w, p in positions.items())


# ts_rank weights {D, C, B, A}: content 1, title 2, keywords 3, questions 4 (as the SQLite
# backend's bm25 column weights)
WEIGHTS = "'{0.25, 0.5, 0.75, 1.0}'"


def any_word(terms: Sequence[str], weight: str = "") -> str:
    """The text of a tsquery matching any of ``terms`` (fit_lexeme'd and quoted), in the
    fields of ``weight`` only when given (``D``: the content, as RAGFlow's chunk-list keywords
    filter). It is passed as a parameter (``?::tsquery``), never built in SQL from the words:
    with a constant query the planner takes the candidates from the GIN index and estimates
    them from the column's statistics, where a query computed inside the statement made it
    test every chunk of the dataset instead."""
    suffix = f":{weight}" if weight else ""
    return " | ".join(_lexeme(term) + suffix for term in terms)
