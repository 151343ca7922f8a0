"""Storage rows -> the JSON objects RAGFlow returns."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

RUN_TEXT = {"0": "UNSTART", "1": "RUNNING", "2": "CANCEL", "3": "DONE", "4": "FAIL"}
RUN_CODE = {text: code for code, text in RUN_TEXT.items()}


def http_date(epoch_seconds: float | None) -> str | None:
    return None if epoch_seconds is None else formatdate(epoch_seconds, usegmt=True)


def _times(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "create_time": row["create_time"],
        "create_date": http_date(row["create_time"] / 1000),
        "update_time": row["update_time"],
        "update_date": http_date(row["update_time"] / 1000),
    }


def dataset(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "avatar": row["avatar"] or None,
        "tenant_id": row["tenant_id"],
        "created_by": row["tenant_id"],
        "description": row["description"],
        "embedding_model": row["embedding_model"],
        "permission": row["permission"],
        "language": row["language"],
        "document_count": row["document_count"],
        "chunk_count": row["chunk_count"],
        "token_num": row["token_num"],
        "chunk_method": row["chunk_method"],
        "parser_config": row["parser_config"],
        "pagerank": row["pagerank"],
        "similarity_threshold": 0.2,
        "vector_similarity_weight": 0.3,
        "status": "1",
        **_times(row),
    }


def document(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "thumbnail": None,
        "dataset_id": row["dataset_id"],
        "chunk_method": row["chunk_method"],
        "parser_config": row["parser_config"],
        "source_type": "local",
        "type": row["type"],
        "created_by": row["created_by"],
        "size": row["size"],
        "token_count": row["token_count"],
        "chunk_count": row["chunk_count"],
        "progress": row["progress"],
        "progress_msg": row["progress_msg"],
        "process_begin_at": http_date(row["process_begin_at"]),
        "process_duration": row["process_duration"],
        "run": RUN_TEXT.get(str(row["run"]), str(row["run"])),
        "status": row["status"],
        "meta_fields": row["meta_fields"],
        "suffix": row["suffix"],
        "location": row["location"],
        **_times(row),
    }


def chunk(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "content": row["content"],
        "document_id": row["doc_id"],
        "docnm_kwd": row["docnm"],
        "important_keywords": row["important_keywords"],
        "questions": row["questions"],
        "dataset_id": row["dataset_id"],
        "image_id": "",
        "available": bool(row["available"]),
        "positions": row["positions"],
    }


def new_chunk(row: Mapping[str, Any]) -> dict[str, Any]:
    """The shape POST .../chunks answers with (RAGFlow's add_chunk)."""
    created = float(row["create_time"])
    return {
        "id": row["id"],
        "content": row["content"],
        "document_id": row["doc_id"],
        "important_keywords": row["important_keywords"],
        "questions": row["questions"],
        "dataset_id": row["dataset_id"],
        "create_timestamp": created,
        "create_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
    }
