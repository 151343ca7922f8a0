"""Every DDL statement of the PostgreSQL backend, as numbered migrations, and their runner.

Migration N brings the schema from version N-1 to N (table ``schema_version``). The runner
holds a transaction-level advisory lock, so many processes on many machines starting at once
apply each migration exactly once: the others wait for the lock, then see the new version.

The columns mirror the SQLite backend's (the same row codec reads both): JSON as text,
booleans as integers, times as epoch numbers. Full-text search uses the index columns of
postgres/fulltext.py (``fts``, ``tokens``, ``freqs``, ``impacts``), the totals and term counts
its triggers keep, and two GIN indexes PostgreSQL maintains. A migration is SQL, or a function
for one that also computes in Python (migration 3 fills the index columns of the chunks already
stored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from api.storage.postgres.fulltext import backfill

ADVISORY_LOCK = 0x52474C54  # "RGLT"
TOTALS_SLOTS = 256  # rows of fulltext_totals: a session writes the one of its backend's pid
_SLOT = f"pg_backend_pid() % {TOTALS_SLOTS}"  # the slot a session writes


def _bm25_index(conn: psycopg.Connection[Any]) -> None:
    """Migration 3: the columns, totals and impact index BM25 ranks with
    (postgres/fulltext.py), filled for the chunks already stored while the table has no GIN
    index (kept up row by row, they made the fill 40 times slower), then indexed and kept."""
    conn.execute(_BM25_COLUMNS.encode())  # several statements: simple protocol
    backfill(conn)
    conn.execute(_BM25_KEPT.encode())


_BM25_COLUMNS = """
ALTER TABLE chunks
    ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN freqs JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN impacts TSVECTOR NOT NULL DEFAULT ''::tsvector;
DROP INDEX chunks_fts;
-- every match's freqs are read when ranking every match: LZ4 reads them in two thirds of the
-- time the default compression takes (measured at 100k chunks), where the server has it
DO $$ BEGIN
    ALTER TABLE chunks ALTER COLUMN freqs SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
CREATE TABLE fulltext_totals (
    slot INTEGER PRIMARY KEY,
    chunks BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    changes BIGINT NOT NULL
);
CREATE TABLE impact_reference (avgdl DOUBLE PRECISION);
INSERT INTO impact_reference VALUES (NULL);
"""

_BM25_KEPT = f"""
CREATE INDEX chunks_fts ON chunks USING GIN (fts);
CREATE INDEX chunks_impacts ON chunks USING GIN (impacts);
INSERT INTO fulltext_totals SELECT 0, count(*), COALESCE(sum(tokens), 0), 0 FROM chunks;
CREATE FUNCTION fulltext_count(added BIGINT, tokens BIGINT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO fulltext_totals AS f VALUES ({_SLOT}, added, tokens, 1)
    ON CONFLICT (slot) DO UPDATE SET chunks = f.chunks + excluded.chunks,
        tokens = f.tokens + excluded.tokens, changes = f.changes + 1
$$;
CREATE FUNCTION chunks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(count(*), COALESCE(sum(tokens), 0)) FROM new_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION chunks_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(-count(*), -COALESCE(sum(tokens), 0)) FROM old_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION chunks_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(0, COALESCE((SELECT sum(tokens) FROM new_rows), 0)
        - COALESCE((SELECT sum(tokens) FROM old_rows), 0));
    RETURN NULL;
END $$;
CREATE TRIGGER chunks_inserted AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_inserted();
CREATE TRIGGER chunks_deleted AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_deleted();
CREATE TRIGGER chunks_updated AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_updated();
"""


def _count_terms(sources: tuple[tuple[str, int], ...], changed_only: bool = False) -> str:
    """The statement adding to ``fulltext_terms`` the words and impacts of the chunks of each
    transition table in ``sources``, times its sign; ``changed_only``: of the rows whose index
    columns changed (an UPDATE's). Rows are written in key order, so two sessions sharing a slot
    wait for each other instead of deadlocking."""
    rows = [
        f"SELECT {impact} AS impact, u.lexeme, {sign} AS n FROM {table} t, unnest(t.{column}) u"
        + (
            " WHERE t.seq IN (SELECT n.seq FROM new_rows n JOIN old_rows o ON o.seq = n.seq"
            " WHERE n.fts <> o.fts OR n.impacts <> o.impacts)"
            if changed_only
            else ""
        )
        for table, sign in sources
        for impact, column in (("false", "fts"), ("true", "impacts"))
    ]
    return (
        f"INSERT INTO fulltext_terms AS f SELECT impact, lexeme, {_SLOT}, sum(n)"
        f" FROM ({' UNION ALL '.join(rows)}) c GROUP BY impact, lexeme"
        " HAVING sum(n) <> 0 ORDER BY impact, lexeme"
        " ON CONFLICT (impact, lexeme, slot) DO UPDATE SET chunks = f.chunks + excluded.chunks"
    )


# fulltext_terms: how many chunks hold each word (an fts lexeme) and each impact (an impacts
# lexeme: word and bucket), one row per slot as fulltext_totals; filled from the chunks stored,
# then kept by the chunk triggers (the totals' row first: sessions sharing a slot queue there)
_TERM_COUNTS = f"""
CREATE TABLE fulltext_terms (
    impact BOOLEAN NOT NULL,
    lexeme TEXT NOT NULL,
    slot INTEGER NOT NULL,
    chunks BIGINT NOT NULL,
    PRIMARY KEY (impact, lexeme, slot)
);
INSERT INTO fulltext_terms
    SELECT false, u.lexeme, 0, count(*) FROM chunks c, unnest(c.fts) u GROUP BY u.lexeme
    UNION ALL
    SELECT true, u.lexeme, 0, count(*) FROM chunks c, unnest(c.impacts) u GROUP BY u.lexeme;
ALTER TABLE fulltext_totals DROP COLUMN changes;
CREATE OR REPLACE FUNCTION fulltext_count(added BIGINT, tokens BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO fulltext_totals AS f VALUES ({_SLOT}, added, tokens)
    ON CONFLICT (slot) DO UPDATE SET chunks = f.chunks + excluded.chunks,
        tokens = f.tokens + excluded.tokens
$$;
CREATE OR REPLACE FUNCTION chunks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(count(*), COALESCE(sum(tokens), 0)) FROM new_rows;
    {_count_terms((("new_rows", 1),))};
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION chunks_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(-count(*), -COALESCE(sum(tokens), 0)) FROM old_rows;
    {_count_terms((("old_rows", -1),))};
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION chunks_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    PERFORM fulltext_count(0, COALESCE((SELECT sum(tokens) FROM new_rows), 0)
        - COALESCE((SELECT sum(tokens) FROM old_rows), 0));
    {_count_terms((("new_rows", 1), ("old_rows", -1)), changed_only=True)};
    RETURN NULL;
END $$;
"""

MIGRATIONS: tuple[str | Callable[[psycopg.Connection[Any]], None], ...] = (
    # 1: the initial schema (the SQLite backend's migrations 1 and 2)
    """
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        prefix TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        create_time BIGINT NOT NULL,
        revoked_time BIGINT
    );
    CREATE TABLE datasets (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
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
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX datasets_tenant_name ON datasets(tenant_id, lower(name));
    CREATE TABLE documents (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id TEXT PRIMARY KEY,
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        suffix TEXT NOT NULL,
        type TEXT NOT NULL,
        size BIGINT NOT NULL,
        location TEXT NOT NULL,
        created_by TEXT NOT NULL,
        chunk_method TEXT NOT NULL,
        parser_config TEXT NOT NULL DEFAULT '{}',
        meta_fields TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT '1',
        run TEXT NOT NULL DEFAULT '0',
        progress DOUBLE PRECISION NOT NULL DEFAULT 0,
        progress_msg TEXT NOT NULL DEFAULT '',
        process_begin_at DOUBLE PRECISION,
        process_duration DOUBLE PRECISION NOT NULL DEFAULT 0,
        chunk_count INTEGER NOT NULL DEFAULT 0,
        token_count INTEGER NOT NULL DEFAULT 0,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX documents_dataset_name ON documents(dataset_id, name);
    CREATE INDEX documents_dataset_time ON documents(dataset_id, create_time);
    CREATE TABLE file_blocks (
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (doc_id, n)
    );
    CREATE TABLE chunks (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        dataset_id TEXT NOT NULL,
        docnm TEXT NOT NULL,
        content TEXT NOT NULL,
        important_keywords TEXT NOT NULL DEFAULT '[]',
        questions TEXT NOT NULL DEFAULT '[]',
        available INTEGER NOT NULL DEFAULT 1,
        positions TEXT NOT NULL DEFAULT '[]',
        token_count INTEGER NOT NULL DEFAULT 0,
        create_time DOUBLE PRECISION NOT NULL,
        fts TSVECTOR NOT NULL DEFAULT ''::tsvector
    );
    CREATE INDEX chunks_doc ON chunks(doc_id, seq);
    CREATE INDEX chunks_dataset ON chunks(dataset_id);
    CREATE INDEX chunks_fts ON chunks USING GIN (fts);
    CREATE TABLE tasks (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        dataset_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT '',
        turn BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('queued','leased','done','failed','cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires DOUBLE PRECISION,
        enqueued_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        last_error TEXT
    );
    CREATE INDEX tasks_fair ON tasks(state, lease_expires, turn, enqueued_at, seq);
    CREATE INDEX tasks_tenant_turn ON tasks(tenant_id, state, turn);
    CREATE INDEX tasks_doc ON tasks(doc_id);
    CREATE TABLE executors (
        consumer TEXT PRIMARY KEY,
        host TEXT NOT NULL, pid INTEGER NOT NULL,
        current_task TEXT, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        started_at DOUBLE PRECISION NOT NULL, last_beat DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL
    );
    """,
    # 2: full-text candidates come from the GIN index whatever the statistics say. Given
    # statistics taken before a bulk ingest into a new dataset (estimated at one row), the
    # planner chose chunks_dataset and tested every chunk of the dataset against the query:
    # 190 ms instead of 11 ms at 100k chunks, until the next ANALYZE, which autovacuum runs
    # only after 10 % of a large table changed. No other statement reads chunks by dataset.
    # Chunks are analysed after 2 % changed.
    """
    DROP INDEX IF EXISTS chunks_dataset;
    ALTER TABLE chunks SET (autovacuum_analyze_scale_factor = 0.02);
    """,
    # 3: BM25 as the SQLite backend ranks (postgres/fulltext.py)
    _bm25_index,
    # 4: each word's and each impact's chunk count, kept by the triggers (fulltext_terms)
    _TERM_COUNTS,
    # 5: ranking reads every candidate's freqs for each term (bm25_sql), and each
    # lookup decompressed it again: stored as it is, the bench's rare question ranks its 14k
    # matches at 1M chunks in 34-38 ms instead of 46-48. Rows up to a page are not compressed,
    # and in longer ones freqs goes last (MAIN: after the other columns). Chunks written before
    # keep their compressed freqs until rewritten (docs/fleet.md, Sizing).
    """
    ALTER TABLE chunks SET (toast_tuple_target = 8160);
    ALTER TABLE chunks ALTER COLUMN freqs SET STORAGE MAIN;
    """,
)


def version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present").fetchone()
    if not row or not _first(row):
        return 0
    found = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(_first(found)) if found else 0


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema up to date; safe when many processes do it at once."""
    if version(conn) >= len(MIGRATIONS):
        return len(MIGRATIONS)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = version(conn)
        if current == 0 and conn.execute("SELECT 1 FROM schema_version").fetchone() is None:
            conn.execute("INSERT INTO schema_version VALUES (0)")
        for number in range(current, len(MIGRATIONS)):
            step = MIGRATIONS[number]
            if isinstance(step, str):
                conn.execute(step.encode())  # several statements: simple protocol
            else:
                step(conn)
        conn.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS),))
    return len(MIGRATIONS)


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
