"""Filters per target syntax: exact rendered lines, and what supervisor/shlex read back."""

from __future__ import annotations

import configparser
import shlex

import pytest

from renderer.filters import (
    nginx_string,
    python_literal,
    shell_quote,
    supervisor_command,
    supervisor_environment,
    supervisor_value,
)


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain", "plain"),
        ("100%", "100%%"),
        ("%(here)s", "%%(here)s"),
        ("a;b", "a;b"),
        ("$HOME", "$HOME"),
        ("it's", "it's"),
        ("in the middle", "in the middle"),
    ],
)
def test_supervisor_value_exact(value: str, line: str) -> None:
    assert supervisor_value(value) == line


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x\x00", " lead", "trail ", "a ;b", "a #b"])
def test_supervisor_value_refuses_what_ini_cannot_carry(value: str) -> None:
    with pytest.raises(ValueError):
        supervisor_value(value)


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("plain", "plain"),
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("two words", "'two words'"),
        ("$HOME", "'$HOME'"),
        ("a;b", "'a;b'"),
        ("a ;b", "'a '';b'"),
        ("a #b", "'a ''#b'"),
        ("it's", "'it'\"'\"'s'"),
        ('say "hi"', "'say \"hi\"'"),
        ("`id`", "'`id`'"),
        ("", "''"),
        ("50%", "50%"),
    ],
)
def test_shell_quote_exact(word: str, quoted: str) -> None:
    assert shell_quote(word) == quoted
    assert shlex.split(quoted) == [word]


@pytest.mark.parametrize("word", ["new\nline", "nul\x00", "esc\x1b"])
def test_shell_quote_refuses_control_characters(word: str) -> None:
    with pytest.raises(ValueError):
        shell_quote(word)


def _ini_value(line: str) -> str:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.read_string(f"[s]\nk={line}\n")
    return parser.get("s", "k")


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (["/bin/py", "-m", "mod"], "/bin/py -m mod"),
        (["/bin/py", "100%"], "/bin/py 100%%"),
        (["/bin/py", "a b;c"], "/bin/py 'a b;c'"),
        (["/bin/py", "a ;c"], "/bin/py 'a '';c'"),
        (["/bin/py", "$(reboot)"], "/bin/py '$(reboot)'"),
        (["/bin/py", "x'y"], "/bin/py 'x'\"'\"'y'"),
    ],
)
def test_supervisor_command_exact_and_read_back(words: list[str], line: str) -> None:
    rendered = supervisor_command(words)
    assert rendered == line
    # what supervisor does: ini value, %-expansion, shlex.split
    assert shlex.split(_ini_value(rendered).replace("%%", "%")) == words


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"A": "1"}, 'A="1"'),
        ({"A": "x,y", "B": "p q"}, 'A="x,y",B="p q"'),
        ({"P": "100%"}, 'P="100%%"'),
        ({"S": "a;b"}, 'S="a;b"'),
    ],
)
def test_supervisor_environment_exact(env: dict[str, str], line: str) -> None:
    assert supervisor_environment(env) == line


@pytest.mark.parametrize(
    "value", ['say "hi"', "'start", "end'", "a\nb", "fe80::1%a ;b", "x #y", "a\t;b"]
)
def test_supervisor_environment_refuses_unrepresentable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^K: "):
        supervisor_environment({"K": value})


@pytest.mark.parametrize(
    ("value", "literal"),
    [("a'b", '"a\'b"'), (True, "True"), (None, "None"), (5, "5"), (["x", 1], "['x', 1]")],
)
def test_python_literal(value: object, literal: str) -> None:
    assert python_literal(value) == literal
    assert eval(literal) == value


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("plain", '"plain"'),
        ("/run/ragflow/web.sock", '"/run/ragflow/web.sock"'),
        ("unix:/a b/web.sock", '"unix:/a b/web.sock"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a\\tb", '"a\\\\tb"'),
        ("a;b #c {d}", '"a;b #c {d}"'),
        ("$host", '"$host"'),
        ("it's", '"it\'s"'),
        ("[::1]:9380", '"[::1]:9380"'),
        ("", '""'),
    ],
)
def test_nginx_string_exact(value: str, token: str) -> None:
    assert nginx_string(value) == token


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "nul\x00", "tab\there"])
def test_nginx_string_refuses_control_characters(value: str) -> None:
    with pytest.raises(ValueError):
        nginx_string(value)
