"""Deterministic synthetic text for the benchmarks: Zipf-distributed made-up words.

Made-up words keep stop-word lists and stemming out of the picture; the Zipf distribution gives
realistic posting-list lengths (a question's terms match a known share of the chunks).
"""

from __future__ import annotations

import io
import itertools
import random

_ONSETS = [
    "b",
    "c",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
VOCABULARY_SIZE = 3000


def vocabulary(size: int = VOCABULARY_SIZE) -> list[str]:
    """`size` distinct pronounceable words, always the same list."""
    syllables = [o + v for o, v in itertools.product(_ONSETS, _VOWELS)]
    rng = random.Random(7)
    words: dict[str, None] = {}
    while len(words) < size:
        words.setdefault("".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))))
    return list(words)


class Corpus:
    """Chunks and documents drawn from one vocabulary with Zipf (s=1) word frequencies."""

    def __init__(self, seed: int = 1) -> None:
        self.words = vocabulary()
        self._weights = list(
            itertools.accumulate(1.0 / (rank + 1) for rank in range(len(self.words)))
        )
        self._rng = random.Random(seed)

    def text(self, n_words: int) -> str:
        return " ".join(self._rng.choices(self.words, cum_weights=self._weights, k=n_words))

    def chunks(self, count: int, words_per_chunk: int = 60) -> list[str]:
        return [self.text(words_per_chunk) for _ in range(count)]

    def question(self, ranks: tuple[int, ...] = (800, 2000, 2900)) -> str:
        """A question whose terms have the given frequency ranks (about 1.5% of 60-word chunks
        match: 150 of 10k, 1,450 of 100k, of which retrieval scores at most top_k=1024)."""
        return " ".join(self.words[r] for r in ranks)

    def document(self, index: int, size_bytes: int = 5000) -> str:
        """A ~`size_bytes` text document carrying the unique word `marker<index>`."""
        lines = [f"marker{index:06d}"]
        length = len(lines[0])
        while length < size_bytes:
            line = self.text(12)
            lines.append(line)
            length += len(line) + 1
        return "\n".join(lines)

    def docx(self, index: int, size_bytes: int = 5000) -> bytes:
        """``document(index)`` as a DOCX file (python-docx), one paragraph per five lines."""
        import docx  # the app's DOCX parser dependency

        lines = self.document(index, size_bytes).split("\n")
        out = io.BytesIO()
        document = docx.Document()
        for start in range(0, len(lines), 5):
            document.add_paragraph(" ".join(lines[start : start + 5]))
        document.save(out)
        return out.getvalue()
