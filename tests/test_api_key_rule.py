"""The RAGFLOW_API_KEY rule, defined once in shared/settings.py and applied at both ends: the
renderer refuses such keys at render time (exit 2) and the application refuses them where it reads
them (api/config.py). Both must agree on every case here and on arbitrary text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.rendered import pinned_environ

from api import config
from renderer.cli import main
from shared.settings import BY_NAME

RULE = "16 to 1024 printable ASCII characters without whitespace"
ACCEPTED = [
    "a" * 16,
    "ragflow-" + "x" * 43,  # what `python -m api.admin` creates
    "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~0",  # every ASCII punctuation character is fine
    "k" * 1024,
]
REFUSED = [
    "1",  # accepted as a full-access key before this rule
    "my key with a space",  # could never authenticate: clients split the header at spaces
    "a" * 15,
    " " + "a" * 16,
    "a" * 16 + " ",
    "tab\there-and-more-text",
    "newline\nhere-and-more",
    "nul\x00here-and-more-text",
    "del\x7fhere-and-more-text",
    "no\u00a0break-space-inside",
    "ключ-ключ-ключ-ключ",  # not ASCII: a header carries it as Latin-1, it never matches
    "\u202eright-to-left-override",
    "k" * 1025,
    " " * 20,
]


def renderer_accepts(key: str) -> bool:
    try:
        BY_NAME["RAGFLOW_API_KEY"].parser.parse(key)
    except ValueError:
        return False
    return True


def app_key(key: str) -> str | None:
    return config.load({"RAGFLOW_API_KEY": key}).api_key


def app_accepts(key: str) -> bool:
    try:
        app_key(key)
    except config.ConfigError:
        return False
    return True


def test_the_table_states_the_rule() -> None:
    assert RULE in BY_NAME["RAGFLOW_API_KEY"].parser.accepts


@pytest.mark.parametrize("key", ACCEPTED, ids=range(len(ACCEPTED)))
def test_accepted_by_both(key: str) -> None:
    assert renderer_accepts(key) and app_accepts(key)
    assert app_key(key) == key


@pytest.mark.parametrize("key", REFUSED, ids=range(len(REFUSED)))
def test_refused_by_both(key: str) -> None:
    assert not renderer_accepts(key)
    assert not app_accepts(key)


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(max_codepoint=0x7F))))
def test_both_sides_agree_on_arbitrary_text(key: str) -> None:
    assert renderer_accepts(key) == app_accepts(key)


def test_empty_means_unset_on_both_sides() -> None:
    assert BY_NAME["RAGFLOW_API_KEY"].parser.parse("") is None
    assert app_key("") is None


@pytest.mark.parametrize("key", ["my key with a space", "1", "short-key-15chr"])
def test_render_refuses_the_key_with_exit_2_stating_the_rule(tmp_path: Path, key: str) -> None:
    err = io.StringIO()
    environ = pinned_environ(tmp_path, RAGFLOW_API_KEY=key)
    code = main(["--output-dir", str(tmp_path / "out")], environ, io.StringIO(), err)
    assert code == 2
    assert "  - RAGFLOW_API_KEY=(value hidden): invalid; accepted: " in err.getvalue()
    assert RULE in err.getvalue()
    assert repr(key) not in err.getvalue()  # a secret is never echoed
    assert len(key) < 4 or key not in err.getvalue()
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_key_file_with_a_bad_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("too short\n")
    err = io.StringIO()
    environ = pinned_environ(tmp_path, RAGFLOW_API_KEY_FILE=str(key_file))
    code = main(["--output-dir", str(tmp_path / "out")], environ, io.StringIO(), err)
    assert code == 2
    assert f"  - RAGFLOW_API_KEY_FILE='{key_file}' (the file's contents): invalid" in err.getvalue()
    assert RULE in err.getvalue() and "too short" not in err.getvalue()


def test_app_refuses_a_bad_key_naming_the_source_not_the_key(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load({"DATA_DIR": str(tmp_path), "RAGFLOW_API_KEY": "my key"})
    assert str(caught.value).startswith("RAGFLOW_API_KEY=(value hidden): invalid; accepted: ")
    assert RULE in str(caught.value) and "my key" not in str(caught.value)
    key_file = tmp_path / "key"
    key_file.write_text("x" * 16 + "\n")  # the final line break is not part of the key
    assert config.load({"RAGFLOW_API_KEY_FILE": str(key_file)}).api_key == "x" * 16
    key_file.write_text("two words but long enough\n")
    with pytest.raises(config.ConfigError, match=r"RAGFLOW_API_KEY_FILE='.*' \(the file's"):
        config.load({"RAGFLOW_API_KEY_FILE": str(key_file)})
