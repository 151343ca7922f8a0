"""The embedding models RAGFlow knows (its built-in and factory models, shipped as data in
api/data/embedding_models.json), the default one, and RAGFlow's availability check."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from api.envelope import argument_error

DATA = Path(__file__).with_name("data") / "embedding_models.json"
BUILTIN = "Builtin"


@cache
def _data() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return loaded


def default() -> str:
    """The embedding model of a dataset created without one."""
    return str(_data()["default"])


def factories() -> dict[str, frozenset[str]]:
    return {name: frozenset(models) for name, models in _data()["factories"].items()}


def is_known(model_id: str) -> bool:
    """RAGFlow's rule: ``<model_name>@<factory>`` (the factory after the last "@") names a
    listed embedding model of that factory, or any model of the built-in factory."""
    name, _, factory = model_id.rpartition("@")
    if factory == BUILTIN and name:
        return True
    return name in factories().get(factory, frozenset())


def model_name(model_id: str) -> str:
    """The model without its factory, as RAGFlow compares datasets' models
    (``split_model_name_and_factory``: the whole id when the factory is not a known one)."""
    name, _, factory = model_id.rpartition("@")
    return name if factory in _data()["factories"] else model_id


def check_available(model_id: str) -> str:
    """``model_id``, or RAGFlow's 101 ``Unsupported model: <...>``."""
    if not is_known(model_id):
        raise argument_error(f"Unsupported model: <{model_id}>")
    return model_id
