"""The full parsing round trip with RAGFlow's own client (ragflow-sdk 0.22.1,
unchanged) against real Gunicorn (the rendered gunicorn.conf.py) and two real
task executor processes: create a dataset, upload txt/md/html/pdf/docx,
``parse_documents``, list chunks, ``retrieve``, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ragflow_sdk import RAGFlow
from support.backends import BACKENDS
from support.executors import DATABASES, executor_env, executors, use_database
from support.gunicorn_server import rendered_gunicorn
from support.sample_files import make_docx, make_pdf

KEY = "parse-e2e-test-key-0001"

FILES: dict[str, bytes] = {
    "notes.txt": b"The aardvark eats termites at night.\nIt digs burrows with strong claws.",
    "guide.md": (
        b"# Pangolin guide\n\nPangolins roll into a ball when threatened.\n\n- scales\n- tongue"
    ),
    "page.html": (
        b"<html><head><script>var x = 'scriptword';</script></head><body>"
        b"<h1>Okapi</h1><p>The okapi lives in the Ituri rainforest.</p></body></html>"
    ),
    "paper.pdf": make_pdf([["Axolotls regenerate their limbs."], ["They stay aquatic adults."]]),
    "report.docx": make_docx(["Quokkas smile for photographs."], [["island", "Rottnest"]]),
}
EXPECTED: dict[str, list[str]] = {
    "notes.txt": ["The aardvark eats termites at night.\nIt digs burrows with strong claws."],
    "guide.md": [
        "# Pangolin guide\nPangolins roll into a ball when threatened.\n- scales\n- tongue"
    ],
    "page.html": ["Okapi\nThe okapi lives in the Ituri rainforest."],
    "paper.pdf": ["Axolotls regenerate their limbs.\nThey stay aquatic adults."],
    "report.docx": ["Quokkas smile for photographs.", "island | Rottnest", "After the table."],
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Gunicorn (2 workers) and 2 executors on one DATA_DIR, on each backend."""
    tmp = tmp_path_factory.mktemp("parse_e2e")
    data_dir = tmp / "data"
    if request.param != "sqlite":
        use_database(data_dir, request.getfixturevalue("pg_cluster").create_database())
    env = executor_env(
        data_dir,
        HOST_IP="127.0.0.1",
        HOST_PORT="0",
        GUNICORN_WORKERS="2",
        RAGFLOW_API_KEY=KEY,
    )
    with executors(data_dir, [1, 2], tmp, RAGFLOW_API_KEY=KEY), rendered_gunicorn(env, tmp) as base:
        yield base, data_dir
    DATABASES.pop(data_dir, None)


@pytest.mark.timeout(120)  # parse_documents polls without a deadline of its own
def test_sdk_parse_round_trip(stack: tuple[str, Path]) -> None:
    base, _ = stack
    rag = RAGFlow(api_key=KEY, base_url=base)
    dataset = rag.create_dataset(name="parse-e2e")
    docs = dataset.upload_documents(
        [{"display_name": name, "blob": blob} for name, blob in FILES.items()]
    )
    assert [d.run for d in docs] == ["UNSTART"] * len(FILES)
    by_id = {d.id: d.name for d in docs}

    results = dataset.parse_documents(list(by_id))
    assert {by_id[doc_id]: run for doc_id, run, _, _ in results} == dict.fromkeys(FILES, "DONE")
    assert {by_id[doc_id]: count for doc_id, _, count, _ in results} == {
        name: len(chunks) for name, chunks in EXPECTED.items()
    }

    for doc in dataset.list_documents(page_size=100):
        assert doc.run == "DONE" and doc.progress == 1.0, doc.progress_msg
        assert doc.process_duration > 0
        assert doc.progress_msg.rstrip().endswith("s)") and "Task done (" in doc.progress_msg
        chunks = doc.list_chunks(page_size=100)
        assert [c.content for c in chunks] == EXPECTED[doc.name], doc.name
        assert all(c.document_id == doc.id for c in chunks)
        assert doc.token_count > 0
    assert "scriptword" not in str(
        [c.content for d in dataset.list_documents() for c in d.list_chunks()]
    )

    found = rag.retrieve(dataset_ids=[dataset.id], question="where does the okapi live")
    assert found and found[0].document_id == next(i for i, n in by_id.items() if n == "page.html")
    assert "Ituri rainforest" in found[0].content
    found = rag.retrieve(dataset_ids=[dataset.id], question="axolotls regenerate limbs")
    assert found and "Axolotls" in found[0].content

    # parsing again replaces the chunks: still exactly one set
    again = dataset.parse_documents([d.id for d in docs if d.name == "report.docx"])
    assert again[0][1:3] == ("DONE", 3)

    dataset.delete_documents(ids=[d.id for d in docs if d.name != "notes.txt"])
    remaining = dataset.list_documents()
    assert [d.name for d in remaining] == ["notes.txt"]
    assert rag.retrieve(dataset_ids=[dataset.id], question="okapi rainforest") == []
    rag.delete_datasets(ids=[dataset.id])
    assert all(d.id != dataset.id for d in rag.list_datasets())


@pytest.mark.timeout(120)
def test_sdk_unsupported_and_broken_files_end_fail(stack: tuple[str, Path]) -> None:
    base, _ = stack
    rag = RAGFlow(api_key=KEY, base_url=base)
    dataset = rag.create_dataset(name="parse-e2e-fail")
    pdf = make_pdf([["x"]])
    docs = dataset.upload_documents(
        [
            {"display_name": "broken.pdf", "blob": pdf[: len(pdf) // 2]},
            {"display_name": "sheet.xlsx", "blob": b"PK\x03\x04 not a workbook"},
            {"display_name": "empty.txt", "blob": b""},
        ]
    )
    by_id = {d.id: d.name for d in docs}
    results = {by_id[i]: run for i, run, _, _ in dataset.parse_documents(list(by_id))}
    assert results == {"broken.pdf": "FAIL", "sheet.xlsx": "FAIL", "empty.txt": "DONE"}
    for doc in dataset.list_documents():
        if doc.run == "FAIL":
            assert doc.progress == -1
            assert doc.progress_msg.splitlines()[-1].startswith("[ERROR] ")
        else:
            assert doc.chunk_count == 0
    rag.delete_datasets(ids=[dataset.id])
