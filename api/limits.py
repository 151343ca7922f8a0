"""Request limits: what one API request may ask for, so its cost is bounded by its input.

Each limit is described once here. The handlers check against these values, the OpenAPI
document carries them, and the table in docs/limits.md is generated from them
(``python -m api.limits --update-docs``; a test fails when the two differ). A request over a
limit gets RAGFlow's envelope with code 101 and a message naming the field, its size and the
limit.

Upload sizes are not here: ``MAX_CONTENT_LENGTH`` is an operator setting (docs/settings.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from api.docs_table import GeneratedTable


@dataclass(frozen=True)
class Limit:
    name: str
    value: int
    unit: str
    applies_to: str
    why: str


JSON_BODY_BYTES = Limit(
    "JSON_BODY_BYTES",
    8 * 1024 * 1024,
    "bytes",
    "the body of every JSON request (uploads are multipart and bounded by MAX_CONTENT_LENGTH)",
    "a worker reads and parses the whole body before it can answer",
)
JSON_DEPTH = Limit(
    "JSON_DEPTH",
    32,
    "levels",
    "nesting of objects and arrays in a JSON body (parser_config, meta_fields, ...)",
    "deeply nested JSON exhausts the parser's recursion",
)
STRING_CHARS = Limit(
    "STRING_CHARS",
    65_536,
    "characters",
    "every string in a JSON body, keys included (smaller limits below and in the OpenAPI"
    " document apply to some fields)",
    "strings are stored, and some (delimiters, names) are compiled or compared",
)
LIST_ITEMS = Limit(
    "LIST_ITEMS",
    10_000,
    "items",
    "every array in a JSON body: ids, document_ids, dataset_ids, chunk_ids,"
    " important_keywords, questions, positions, ...",
    "each item costs a database look-up or a bound SQL parameter",
)
QUERY_CHARS = Limit(
    "QUERY_CHARS",
    8_192,
    "characters",
    "the retrieval `question` and the chunk-list `keywords`",
    "the text is tokenised and highlighted",
)
QUERY_TERMS = Limit(
    "QUERY_TERMS",
    64,
    "distinct terms",
    "the words searched and scored for a retrieval `question` or chunk-list `keywords`"
    " (stopwords not counted)",
    "each term is a full-text posting list read and scored for every candidate chunk",
)

TOP_K = Limit(
    "TOP_K",
    4_096,
    "chunks",
    "the retrieval `top_k` (default 1,024): candidates fetched by full-text rank, then scored;"
    " as on RAGFlow's Elasticsearch, a smaller top_k does not cut full-text matches (at least"
    " 1,024 candidates are scored)",
    "each candidate is scored",
)
PAGE_SIZE = Limit(
    "PAGE_SIZE",
    4_096,
    "items",
    "`page_size` of every list (datasets, documents, chunks) and of retrieval",
    "each item of a page is read, serialised (and highlighted) and sent",
)

META_FIELDS_BYTES = Limit(
    "META_FIELDS_BYTES",
    65_536,
    "bytes",
    "a document's `meta_fields`, as JSON",
    "stored with the document and sent with it in every document list",
)
CHUNK_CHARS = Limit(
    "CHUNK_CHARS",
    16_384,
    "characters",
    "a chunk added or updated through the API: its `content`, and its `important_keywords`"
    " and `questions` (each list counted as the sum of its items)",
    "every retrieval that finds the chunk scans and highlights it (a parsed chunk is at most"
    " `chunk_token_num` 2,048 tokens)",
)

LIMITS: tuple[Limit, ...] = (
    JSON_BODY_BYTES,
    JSON_DEPTH,
    STRING_CHARS,
    LIST_ITEMS,
    QUERY_CHARS,
    QUERY_TERMS,
    TOP_K,
    PAGE_SIZE,
    CHUNK_CHARS,
    META_FIELDS_BYTES,
)


def _rows() -> list[str]:
    return [
        "| limit | value | applies to | why |",
        "| --- | --- | --- | --- |",
        *(
            f"| `{lim.name}` | {lim.value:,} {lim.unit} | {lim.applies_to} | {lim.why} |"
            for lim in LIMITS
        ),
    ]


DOCS_TABLE = GeneratedTable("api.limits", "limits.md", "limits table", _rows)


if __name__ == "__main__":
    raise SystemExit(DOCS_TABLE.main(sys.argv[1:]))
