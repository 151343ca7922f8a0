"""The pure parts of the retrieval growth benchmark (bench.retrieval_scale, bench.seeded): the
question classes match the shares of chunks they are named for, and the seed cache only counts
a seed once its facts are recorded. The benchmark itself is run by hand, not by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import limits
from bench import retrieval_scale, seeded
from bench.corpus import Corpus


def test_match_share_agrees_with_the_generated_corpus() -> None:
    corpus = Corpus(seed=3)
    chunks = [set(text.split()) for text in corpus.chunks(4000)]
    for ranks in [(800, 2000, 2900), (10, 100, 1000), (20,), (0,)]:
        words = {corpus.words[r] for r in ranks}
        found = sum(1 for chunk in chunks if chunk & words) / len(chunks)
        expected = retrieval_scale.match_share(ranks)
        assert abs(found - expected) < 0.015, (ranks, found, expected)


def test_the_classes_are_the_issue_s() -> None:
    words = Corpus().words
    by_name = {qc.name: qc for qc in retrieval_scale.classes(words)}
    assert list(by_name) == [
        "rare (1.5%)",
        "common (51.1%)",
        "one word (28.4%)",
        "one word (99.9%)",
        "1-5 mixed terms, 20 questions",
        retrieval_scale.LARGEST,
    ]
    assert by_name["rare (1.5%)"].bodies == [
        {"question": f"{words[800]} {words[2000]} {words[2900]}"}
    ]
    mixed = by_name["1-5 mixed terms, 20 questions"].bodies
    assert len(mixed) == 20
    assert all(
        1 <= len(set(b["question"].split())) == len(b["question"].split()) <= 5 for b in mixed
    )
    (largest,) = by_name[retrieval_scale.LARGEST].bodies
    assert len(set(largest["question"].split())) == limits.QUERY_TERMS.value
    assert largest["top_k"] == limits.TOP_K.value
    assert largest["page_size"] == limits.PAGE_SIZE.value
    assert by_name[retrieval_scale.LARGEST].concurrency == (1,)


def test_mixed_questions_span_rare_to_every_chunk() -> None:
    ranks = [r for q in retrieval_scale.question_ranks(200, seed=15) for r in q]
    assert min(ranks) < 3 and max(ranks) > 1500
    decades = [sum(1 for r in ranks if lo <= r + 1 < lo * 10) for lo in (1, 10, 100)]
    assert min(decades) > 0.6 * max(decades)  # log-uniform: each decade about as likely
    assert retrieval_scale.question_ranks(5) == retrieval_scale.question_ranks(5)


def test_a_seed_counts_only_once_recorded(tmp_path: Path) -> None:
    assert seeded.cached(tmp_path, "postgresql", 1000) is None
    directory = seeded.seed_dir(tmp_path, "postgresql", 1000)
    directory.mkdir(parents=True)  # an interrupted seed: a directory, no facts
    assert seeded.cached(tmp_path, "postgresql", 1000) is None
    facts = seeded.Seeded("postgresql", 1000, "d1", ["a", "b"], 1.5, seeded.database_name(1000))
    seeded.record(tmp_path, facts)
    assert seeded.cached(tmp_path, "postgresql", 1000) == facts
    assert seeded.cached(tmp_path, "sqlite", 1000) is None


@pytest.mark.parametrize(("backend", "chunks"), [("mysql", 1000), ("sqlite", 0), ("sqlite", 1001)])
def test_seed_dir_refuses_what_it_cannot_seed(backend: str, chunks: int) -> None:
    with pytest.raises(ValueError, match=backend if backend == "mysql" else "multiple"):
        seeded.seed_dir(Path("/nonexistent"), backend, chunks)


def test_growth_reads_p50_at_concurrency_one() -> None:
    cells = {
        (s, "sqlite", "current", "rare", 1): {"p50_ms": p}
        for s, p in [(10, 2.0), (100, 5.0), (1000, 40.0)]
    }
    assert retrieval_scale.growth(cells, [10, 100, 1000], ("sqlite", "current", "rare")) == (
        "x2.5, x8.0"
    )


@pytest.mark.parametrize(
    ("single_s", "connections", "expected"),
    [
        (0.005, 1, retrieval_scale.WINDOW_S),  # fast cells: the shortest window
        (0.05, 1, 10.0),  # 200 answers one at a time: a p99 that is not the slowest
        (0.75, 32, 24.0),  # 64 answers, two CPUs answering at once
        (10.0, 1, retrieval_scale.MAX_WINDOW_S),  # bounded
    ],
)
def test_slow_cells_get_windows_long_enough_for_steady_state(
    single_s: float, connections: int, expected: float
) -> None:
    assert retrieval_scale.window_s(single_s, connections, cpus=2) == expected


def test_a_class_of_several_questions_gets_a_window_that_asks_each_one() -> None:
    assert retrieval_scale.window_s(0.3, 32, cpus=2, bodies=80) == 12.0  # 80 answers in turn
    assert retrieval_scale.window_s(0.3, 32, cpus=2, bodies=20) == 9.6  # 64 answers anyway
