"""Tests only: keep parse tasks mid-flight in real processes, without a hook in the application.

A program started with this directory first on PYTHONPATH and RAGFLOW_TEST_SECTION_DELAY=<seconds>
imports this module at start-up (Python's ``sitecustomize``): when ``api.parsing.pipeline`` is
imported, its ``parser_for`` is wrapped so that every parser sleeps that long after each section
it yields. support.slow_sections.environment() sets both variables.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

TARGET = "api.parsing.pipeline"


def slowed(parser_for: Callable[[str], Any], delay: float) -> Callable[[str], Any]:
    def slow_parser_for(suffix: str) -> Any:
        parse = parser_for(suffix)

        def slow(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for section in parse(*args, **kwargs):
                yield section
                time.sleep(delay)

        return slow

    return slow_parser_for


class _Patcher(importlib.abc.MetaPathFinder):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module
        delay = self.delay

        def exec_module(module: ModuleType) -> None:
            execute(module)
            module.parser_for = slowed(module.parser_for, delay)  # type: ignore[attr-defined]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_delay = float(os.environ.get("RAGFLOW_TEST_SECTION_DELAY", "0") or 0)
if _delay > 0:
    sys.meta_path.insert(0, _Patcher(_delay))
