"""The naive chunker and the local token counter."""

from __future__ import annotations

import time

import pytest

from api.parsing.chunker import Section, decode_escapes, merge, parse_delimiters, split_text
from api.parsing.tokens import count_tokens, windows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),
        ("internationalization", 4),  # 20 letters: one token per started 6
        ("12345", 2),
        ("a, b.", 4),
        ("中文字", 3),
        ("  \n\t ", 0),
    ],
)
def test_count_tokens(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


def test_windows_cut_at_token_boundaries_and_keep_all_text() -> None:
    text = " ".join(f"w{i}" for i in range(10))  # each "wN" is 2 tokens
    pieces = list(windows(text + "  ", 4))
    assert pieces == [("w0 w1", 4), ("w2 w3", 4), ("w4 w5", 4), ("w6 w7", 4), ("w8 w9", 4)]
    assert list(windows("a b c", 2)) == [("a b", 2), ("c", 1)]
    assert list(windows("   ", 2)) == []


def test_windows_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(windows("a", 0))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\n", "\n"),
        (r"\t;", "\t;"),
        (r"\\n", "\\n"),
        (r"a\qb", r"a\qb"),
        (r"\`", "`"),
    ],
)
def test_decode_escapes(raw: str, expected: str) -> None:
    assert decode_escapes(raw) == expected


def test_parse_delimiters_single_chars_backticks_and_escapes() -> None:
    assert parse_delimiters(r"\n!?`##`;`\n\n`") == ["\n\n", "##", "\n", "!", ";", "?"]
    assert parse_delimiters("") == []


def test_split_text_keeps_visible_single_delimiters_and_drops_the_rest() -> None:
    delimiters = parse_delimiters(r"\n.`##`")
    assert list(split_text("One. Two\nThree##Four", delimiters)) == [
        "One.",
        "Two",
        "Three",
        "Four",
    ]
    assert list(split_text("  only  ", [])) == ["only"]


def test_merge_appends_sections_up_to_the_budget() -> None:
    sections = [Section("one two three"), Section("four five"), Section("six")]
    assert list(merge(sections, 5)) == [("one two three\nfour five", 5), ("six", 1)]


def test_merge_never_exceeds_the_budget() -> None:
    sections = [Section(" ".join(["word"] * n)) for n in (1, 7, 3, 30, 2, 9, 4)]
    chunks = list(merge(sections, 8))
    assert all(tokens <= 8 for _, tokens in chunks)
    assert all(count_tokens(content) == tokens for content, tokens in chunks)
    joined = " ".join(content for content, _ in chunks).split()
    assert joined == " ".join(s.text for s in sections).split()


def test_oversized_section_is_split_on_delimiters_first() -> None:
    text = "alpha beta. gamma delta. epsilon zeta."
    chunks = list(merge([Section(text)], 6, "."))  # 9 tokens: "alpha", "beta", "." ...
    assert [c for c, _ in chunks] == ["alpha beta.\ngamma delta.", "epsilon zeta."]


def test_standalone_sections_get_their_own_chunk() -> None:
    sections = [Section("a"), Section("t1 | t2", standalone=True), Section("b")]
    assert [c for c, _ in merge(sections, 100)] == ["a", "t1 | t2", "b"]


def test_backtick_delimiter_splits_oversized_text() -> None:
    text = "part one words here###part two words here"
    chunks = [c for c, _ in merge([Section(text)], 4, "`###`")]
    assert chunks == ["part one words here", "part two words here"]


def test_merge_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(merge([Section("a")], 0))


def test_a_long_single_line_is_chunked_in_bounded_time() -> None:
    line = "token " * 1_000_000  # 6 MB, one line, no delimiter in it
    started = time.monotonic()
    chunks = list(merge([Section(line)], 512, "\n"))
    assert time.monotonic() - started < 30
    assert len(chunks) == 1_000_000 // 512 + 1
    assert all(tokens <= 512 for _, tokens in chunks)
