"""Admin CLI: ``python -m api.admin {init,migrate,create-key,list-keys,revoke-key,status,copy}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from api import auth, config, storage
from api.storage import data_copy
from shared import database_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create DATA_DIR and the database schema")
    sub.add_parser("migrate", help="bring the database schema up to date")
    create = sub.add_parser("create-key", help="create an API key and print it once")
    create.add_argument("--tenant", default=auth.DEFAULT_TENANT, help="tenant id the key acts as")
    create.add_argument("--name", default="", help="a label shown by list-keys")
    sub.add_parser("list-keys", help="list keys (prefix, tenant, name, times) as JSON lines")
    revoke = sub.add_parser("revoke-key", help="revoke the keys with this prefix or hash prefix")
    revoke.add_argument("prefix")
    sub.add_parser(
        "status", help="every tenant's parse queue and every task executor, as JSON (operators)"
    )
    move = sub.add_parser(
        "copy",
        help="copy keys, datasets, documents, files, chunks and tasks to another database,"
        " verify counts and checksums (re-run after an interruption: nothing is duplicated)",
    )
    move.add_argument("--from", dest="source", required=True, help="source DATABASE_URL")
    move.add_argument("--to", dest="target", required=True, help="target DATABASE_URL")
    args = parser.parse_args(argv)
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, cfg)
    except storage.Unavailable as exc:
        print(f"admin: {exc}", file=sys.stderr)
        return 1


def _copy(args: argparse.Namespace, cfg: config.Config) -> int:
    """SQLite's uploaded files live next to its database file (DATA_DIR/ragflow.db)."""
    ends = []
    for url in (args.source, args.target):
        try:
            parsed = database_url.parse(url)
        except ValueError as exc:
            print(f"admin: {url.split('://')[0]}:// URL refused: {exc}", file=sys.stderr)
            return 2
        data_dir = Path(parsed.path).parent if parsed.path is not None else cfg.data_dir
        ends.append(storage.open_backend(data_dir, url, cfg.pool))
    source, target = ends
    if source.location == target.location:
        print("admin: --from and --to name the same database", file=sys.stderr)
        return 2
    print(f"copying {source.name} {source.location} to {target.name} {target.location}")
    report = data_copy.copy(source, target)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _run(args: argparse.Namespace, cfg: config.Config) -> int:
    if args.command == "copy":
        return _copy(args, cfg)
    backend = storage.open_backend(cfg.data_dir, cfg.database_url, cfg.pool)
    store = backend.store
    if args.command in ("init", "migrate"):
        version = backend.migrations.migrate()
        print(f"{backend.name} storage at {backend.location} is at schema version {version}")
    elif args.command == "create-key":
        key = auth.new_key()
        store.add_key(auth.hash_key(key), key[:16], args.tenant, args.name)
        print(key)
    elif args.command == "list-keys":
        for row in store.list_keys():
            print(json.dumps(row))
    elif args.command == "status":
        stale_after = config.load_task_settings().stale_after
        report = {
            "queue": backend.tasks.depth(),
            "task_executors": backend.heartbeats.executors(stale_after=stale_after),
        }
        print(json.dumps(report, indent=2))
    elif args.command == "revoke-key":
        if len(args.prefix) < 8:
            print("admin: give at least 8 characters of the key prefix", file=sys.stderr)
            return 2
        count = store.revoke_keys(args.prefix)
        print(f"revoked {count} key(s)")
        return 0 if count else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
