"""One document file -> its chunk rows: read within the limits, parse, chunk.

``checkpoint`` is called between sections with the number of sections done so
far; the executor uses it to report progress and to stop (by raising) when the
task was cancelled or its lease lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from api.filetypes import parser_for
from api.parsing.chunker import DEFAULT_CHUNK_TOKEN_NUM, DEFAULT_DELIMITER, Section, merge
from api.parsing.limits import Limits
from api.parsing.parsers import ParseError, timeout_error


def chunk_settings(parser_config: Mapping[str, Any]) -> tuple[int, str]:
    """``(chunk_token_num, delimiter)`` from a parser_config, defaults for bad values."""
    size = parser_config.get("chunk_token_num")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2048:
        size = DEFAULT_CHUNK_TOKEN_NUM
    delimiter = parser_config.get("delimiter")
    if not isinstance(delimiter, str) or not delimiter:
        delimiter = DEFAULT_DELIMITER
    return size, delimiter


def _paced(
    sections: Iterable[Section], limits: Limits, checkpoint: Callable[[int], None]
) -> Iterator[Section]:
    deadline = time.monotonic() + limits.timeout
    for done, section in enumerate(sections, 1):
        yield section
        if time.monotonic() > deadline:
            raise timeout_error(limits)
        checkpoint(done)


def build_chunks(
    path: Path,
    *,
    suffix: str,
    parser_config: Mapping[str, Any],
    limits: Limits,
    checkpoint: Callable[[int], None] = lambda done: None,
) -> list[dict[str, Any]]:
    """The chunk rows for one document, ``{"content", "token_count"}`` each, in
    order, as ``api.storage.replace_document_chunks`` takes them (it derives the
    ids and collapses identical contents)."""
    parser = parser_for(suffix)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ParseError(f"the uploaded file is missing ({exc.strerror})") from None
    if size > limits.max_bytes:
        raise ParseError(
            f"the file is {size} bytes, over PARSE_MAX_BYTES={limits.max_bytes}; "
            "split it or raise the limit"
        )
    data = path.read_bytes()
    chunk_token_num, delimiter = chunk_settings(parser_config)
    sections = _paced(parser(data, delimiter, limits), limits, checkpoint)
    rows: list[dict[str, Any]] = []
    for content, tokens in merge(sections, chunk_token_num, delimiter):
        if len(rows) >= limits.max_chunks:
            raise ParseError(
                f"the file makes more than PARSE_MAX_CHUNKS={limits.max_chunks} chunks; "
                "split it, use a larger chunk_token_num or raise the limit"
            )
        rows.append({"content": content, "token_count": tokens})
    return rows
