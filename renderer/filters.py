"""Jinja2 filters, one per target syntax.

Each filter either returns text that its consumer reads back as exactly the
input, or raises ValueError. Settings validation rejects such values first, so
a ValueError here means a validator is missing (a bug), never a broken file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# configparser (as supervisor configures it) treats ';' or '#' after whitespace
# as the start of an inline comment.
_INLINE_COMMENT = re.compile(r"(\s)([;#])")


def _refuse_control(value: str) -> None:
    if _CONTROL.search(value):
        raise ValueError(f"control characters cannot be rendered: {value!r}")


def supervisor_value(value: object) -> str:
    """A supervisord ini value: ``%`` doubled (supervisor expands ``%(name)s``).

    Refuses what ini syntax cannot carry: control characters (a newline would
    start a new key or section), surrounding whitespace (stripped by the
    parser) and ``;``/``#`` after whitespace (an inline comment).
    """
    text = str(value)
    _refuse_control(text)
    if text != text.strip():
        raise ValueError(f"surrounding whitespace cannot be rendered: {text!r}")
    if _INLINE_COMMENT.search(text):
        raise ValueError(f"';' or '#' after whitespace cannot be rendered: {text!r}")
    return text.replace("%", "%%")


def shell_quote(value: object) -> str:
    """One command-line word, quoted so that ``shlex.split`` returns it unchanged.

    ``shlex.quote`` output may hold whitespace followed by ``;`` or ``#`` inside
    single quotes; an empty ``''`` is inserted between them so the ini parser
    does not see an inline comment (``'a ;b'`` -> ``'a '';b'``).
    """
    text = str(value)
    _refuse_control(text)
    return _INLINE_COMMENT.sub(r"\1''\2", shlex.quote(text))


def supervisor_command(words: Iterable[object]) -> str:
    """A supervisord ``command=`` value: shell-quoted words, then ``%``-escaped."""
    return " ".join(shell_quote(word) for word in words).replace("%", "%%")


def supervisor_environment(env: Mapping[str, object]) -> str:
    """A supervisord ``environment=`` value: ``KEY="value",...``.

    supervisor splits it with a non-POSIX shlex and strips quote characters from
    both ends of each value, so values must not hold ``"`` or start/end with ``'``.
    The ini parser cuts the line at ``;``/``#`` after whitespace, quotes or not.
    """
    pairs = []
    for key, raw in env.items():
        value = str(raw)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not an environment variable name: {key!r}")
        if _CONTROL.search(value):
            raise ValueError(f"{key}: control characters cannot be rendered: {value!r}")
        if '"' in value or value.startswith("'") or value.endswith("'"):
            raise ValueError(f"{key}: quotes cannot be rendered in environment=: {value!r}")
        if _INLINE_COMMENT.search(value):
            raise ValueError(
                f"{key}: ';' or '#' after whitespace cannot be rendered in environment=: {value!r}"
            )
        pairs.append(f'{key}="{value}"')
    return ",".join(pairs).replace("%", "%%")


def python_literal(value: object) -> str:
    """A Python literal for the rendered gunicorn.conf.py (repr of str/int/bool/None/list)."""
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    raise ValueError(f"no Python literal for {type(value).__name__}: {value!r}")


def nginx_string(value: object) -> str:
    """One nginx configuration token: double-quoted, ``\\`` and ``"`` backslash-escaped.

    Inside quotes nginx reads ``;``, ``#``, ``{``, ``}`` and whitespace literally; its tokenizer
    turns ``\\t``, ``\\n``, ``\\r`` into control characters, so every backslash is doubled.
    Use it only in directives that take no variables (``$name`` would be expanded there).
    """
    text = str(value)
    _refuse_control(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


FILTERS = {
    "supervisor": supervisor_value,
    "shell": shell_quote,
    "command": supervisor_command,
    "environment": supervisor_environment,
    "py": python_literal,
    "nginx": nginx_string,
}
