"""Every DDL statement of the SQLite backend, as numbered migrations, and their runner.

Migration N brings the schema from user_version N-1 to N. They run inside one
``BEGIN IMMEDIATE`` transaction, so several processes starting at once apply
each migration exactly once (the others wait on the lock, then see the new
version).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

_NO_AVGDL = 1e18  # no weight computed yet: nothing has grown
_AVERAGES = "(SELECT block FROM chunks_fts_data WHERE id = 1)"


def _size(row: str) -> str:
    return f"(SELECT sz FROM chunks_fts_docsize WHERE id = {row}.seq)"


def _columns(row: str) -> str:
    """The chunk ``row``'s indexed columns, as the arguments of rf_impacts and rf_terms."""
    return ", ".join(
        f"{row}.{column}" for column in ("content", "docnm", "important_keywords", "questions")
    )


def _impacts(row: str) -> str:
    """The chunk ``row``'s impact index text (fulltext.impacts)."""
    return f"rf_impacts({_columns(row)}, {_size(row)}, {_AVERAGES})"


def _reference(row: str) -> str:
    """The mean length the chunk ``row``'s weights are computed with (fulltext.reference)."""
    return f"rf_reference({_size(row)}, {_AVERAGES})"


def _fts_values(row: str) -> str:
    """The chunk ``row``'s rowid and words in the full-text index's columns."""
    return (
        f"{row}.seq, rf_words({row}.content), rf_title({row}.docnm),"
        f" rf_words({row}.important_keywords), rf_words({row}.questions)"
    )


def _index(row: str) -> str:
    return f"""INSERT INTO chunks_fts (rowid, content, title, keywords, questions) VALUES (
            {_fts_values(row)});
        INSERT INTO chunks_impacts (rowid, terms) VALUES ({row}.seq, {_impacts(row)});
        UPDATE impact_avgdl SET avgdl = MIN(avgdl, {_reference(row)});"""


def _unindex_kept(row: str) -> str:
    """Take the chunk ``row`` out of the indexes, while chunks_fts kept a copy of its words
    (migrations 3 and 4: FTS5 read them back)."""
    return f"""DELETE FROM chunks_fts WHERE rowid = {row}.seq;
        DELETE FROM chunks_impacts WHERE rowid = {row}.seq;"""


def _unindex(row: str) -> str:
    """Take the chunk ``row`` out of the indexes: chunks_fts keeps no copy of its words
    (migration 5), so they are given again, split as they were indexed."""
    return f"""INSERT INTO chunks_fts (chunks_fts, rowid, content, title, keywords, questions)
            VALUES ('delete', {_fts_values(row)});
        DELETE FROM chunks_impacts WHERE rowid = {row}.seq;"""


def _count(row: str, sign: str) -> str:
    """Add the chunk ``row`` (``sign`` "+") to, or take it (``sign`` "-") from, the chunk counts
    of its terms (fulltext.terms)."""
    held = f"json_each(rf_terms({_columns(row)}))"
    if sign == "+":  # WHERE true: SQLite reads ON CONFLICT after a SELECT only past a WHERE
        return f"""INSERT INTO chunk_terms (term, chunks) SELECT value, 1 FROM {held} WHERE true
            ON CONFLICT (term) DO UPDATE SET chunks = chunks + 1;"""
    return f"UPDATE chunk_terms SET chunks = chunks - 1 WHERE term IN (SELECT value FROM {held});"


def _triggers(unindex: Callable[[str], str]) -> str:
    """The chunk triggers keeping the indexes and the term counts, ``unindex`` taking a chunk
    out of the indexes."""
    return f"""
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        {_index("new")}
        {_count("new", "+")}
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        {unindex("old")}
        {_count("old", "-")}
    END;
    CREATE TRIGGER chunks_fts_update AFTER UPDATE OF content, docnm, important_keywords,
        questions ON chunks BEGIN
        {unindex("old")}
        {_count("old", "-")}
        {_index("new")}
        {_count("new", "+")}
    END;"""


MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,          -- sha256 hex of the key; the key itself is never stored
        prefix TEXT NOT NULL,               -- first characters, to recognise a key in listings
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        create_time INTEGER NOT NULL,
        revoked_time INTEGER
    );
    CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        avatar TEXT,
        description TEXT,
        embedding_model TEXT NOT NULL DEFAULT '',
        permission TEXT NOT NULL DEFAULT 'me',
        chunk_method TEXT NOT NULL DEFAULT 'naive',
        parser_config TEXT NOT NULL DEFAULT '{}',
        pagerank INTEGER NOT NULL DEFAULT 0,
        language TEXT NOT NULL DEFAULT 'English',
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX datasets_tenant_name ON datasets(tenant_id, name COLLATE NOCASE);
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        suffix TEXT NOT NULL,
        type TEXT NOT NULL,
        size INTEGER NOT NULL,
        location TEXT NOT NULL,
        created_by TEXT NOT NULL,
        chunk_method TEXT NOT NULL,
        parser_config TEXT NOT NULL DEFAULT '{}',
        meta_fields TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT '1',
        run TEXT NOT NULL DEFAULT '0',
        progress REAL NOT NULL DEFAULT 0,
        progress_msg TEXT NOT NULL DEFAULT '',
        process_begin_at REAL,
        process_duration REAL NOT NULL DEFAULT 0,
        chunk_count INTEGER NOT NULL DEFAULT 0,
        token_count INTEGER NOT NULL DEFAULT 0,
        create_time INTEGER NOT NULL,
        update_time INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX documents_dataset_name ON documents(dataset_id, name);
    CREATE INDEX documents_dataset_time ON documents(dataset_id, create_time);
    CREATE TABLE chunks (
        seq INTEGER PRIMARY KEY,            -- stable rowid shared with chunks_fts
        id TEXT NOT NULL UNIQUE,            -- xxhash64 hex of content + document id
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        dataset_id TEXT NOT NULL,
        docnm TEXT NOT NULL,                -- the document's name, indexed as the title
        content TEXT NOT NULL,
        important_keywords TEXT NOT NULL DEFAULT '[]',
        questions TEXT NOT NULL DEFAULT '[]',
        available INTEGER NOT NULL DEFAULT 1,
        positions TEXT NOT NULL DEFAULT '[]',
        token_count INTEGER NOT NULL DEFAULT 0,
        create_time REAL NOT NULL
    );
    CREATE INDEX chunks_doc ON chunks(doc_id, seq);
    CREATE INDEX chunks_dataset ON chunks(dataset_id);
    -- rf_words() and rf_title() are registered on every connection api.storage opens: they
    -- split text exactly like api.text.tokens (rf_title drops the file extension), so the
    -- index and the queries agree.
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        content, title, keywords, questions, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, content, title, keywords, questions) VALUES (
            new.seq, rf_words(new.content), rf_title(new.docnm),
            rf_words(new.important_keywords), rf_words(new.questions));
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        DELETE FROM chunks_fts WHERE rowid = old.seq;
    END;
    CREATE TRIGGER chunks_fts_update AFTER UPDATE OF content, docnm, important_keywords,
        questions ON chunks BEGIN
        DELETE FROM chunks_fts WHERE rowid = old.seq;
        INSERT INTO chunks_fts (rowid, content, title, keywords, questions) VALUES (
            new.seq, rf_words(new.content), rf_title(new.docnm),
            rf_words(new.important_keywords), rf_words(new.questions));
    END;
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        dataset_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued','leased','done','failed','cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires REAL,
        enqueued_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        last_error TEXT
    );
    CREATE INDEX tasks_ready ON tasks(state, lease_expires, enqueued_at);
    CREATE INDEX tasks_doc ON tasks(doc_id);
    CREATE TABLE executors (
        consumer TEXT PRIMARY KEY,
        host TEXT NOT NULL, pid INTEGER NOT NULL,
        current_task TEXT, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL, last_beat REAL NOT NULL, state TEXT NOT NULL
    );
    """,
    # 2: fair claims across tenants. A task carries its tenant and a turn: the tenant's next
    # turn when it was queued (one more than its last queued task, and never earlier than the
    # queue's lowest queued turn). Executors claim the lowest turn first, then the oldest, so
    # tenants take turns instead of one tenant's backlog delaying everyone (queue_sql.py).
    """
    ALTER TABLE tasks ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
    UPDATE tasks SET tenant_id = COALESCE(
        (SELECT tenant_id FROM datasets WHERE datasets.id = tasks.dataset_id), '');
    CREATE INDEX tasks_fair ON tasks(state, lease_expires, turn, enqueued_at);
    CREATE INDEX tasks_tenant_turn ON tasks(tenant_id, state, turn);
    """,
    # 3: the impact index (fulltext.py, topk.py): each chunk's weightiest terms with the bucket
    # of their weight, in an FTS5 table sharing the chunk's rowid, and the lowest mean chunk
    # length a weight was computed with (the bound of how much weights have grown since).
    f"""
    CREATE VIRTUAL TABLE chunks_impacts USING fts5(
        terms, detail = none, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE impact_avgdl (avgdl REAL NOT NULL);
    INSERT INTO impact_avgdl (avgdl) VALUES ({_NO_AVGDL});
    INSERT INTO chunks_impacts (rowid, terms)
        SELECT c.seq, {_impacts("c")} FROM chunks c;
    UPDATE impact_avgdl SET avgdl = MIN(avgdl, COALESCE(
        (SELECT MIN({_reference("c")}) FROM chunks c), {_NO_AVGDL}));
    DROP TRIGGER chunks_fts_insert;
    DROP TRIGGER chunks_fts_delete;
    DROP TRIGGER chunks_fts_update;
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        {_index("new")}
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        {_unindex_kept("old")}
    END;
    CREATE TRIGGER chunks_fts_update AFTER UPDATE OF content, docnm, important_keywords,
        questions ON chunks BEGIN
        {_unindex_kept("old")}
        {_index("new")}
    END;
    """,
    # 4: how many chunks hold each term (chunk_terms), counted from the chunks stored, then kept
    # by the chunk triggers: a search reads its terms' counts instead of FTS5 counting their
    # postings (at 1M chunks, 20-37 ms for a word in nearly every chunk). A term no chunk holds
    # any more keeps its row, at 0.
    f"""
    CREATE TABLE chunk_terms (term TEXT PRIMARY KEY, chunks INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO chunk_terms (term, chunks)
        SELECT t.value, count(*) FROM chunks c, json_each(rf_terms({_columns("c")})) t
        GROUP BY t.value;
    DROP TRIGGER chunks_fts_insert;
    DROP TRIGGER chunks_fts_delete;
    DROP TRIGGER chunks_fts_update;
    {_triggers(_unindex_kept)}
    """,
    # 5: the full-text index keeps no copy of the words it holds (content=''): the chunks are
    # that copy, and a chunk's words are split again to take it out. At 1M chunks of the bench
    # corpus the copy took 489 MB of the 1.53 GB file. The index is built again from the chunks
    # (its ranks and lengths are the same: the same words); the pages the copy held are free,
    # for later writes to reuse (VACUUM gives them back to the file system).
    f"""
    DROP TRIGGER chunks_fts_insert;
    DROP TRIGGER chunks_fts_delete;
    DROP TRIGGER chunks_fts_update;
    DROP TABLE chunks_fts;
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        content, title, keywords, questions, content = '',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO chunks_fts (rowid, content, title, keywords, questions)
        SELECT {_fts_values("c")} FROM chunks c ORDER BY c.seq;
    {_triggers(_unindex)}
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; safe when several processes do it at once."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return len(MIGRATIONS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number in range(version, len(MIGRATIONS)):
            for statement in statements(MIGRATIONS[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return len(MIGRATIONS)


def statements(script: str) -> Iterator[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about triggers)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not pending.strip():
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:80]}")
