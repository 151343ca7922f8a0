"""Benchmark 4: memory of the web tier with and without preload, and without gc.freeze().

Each variant runs alone (PSS divides shared pages among every process that maps them, so two
bundles at once would lower each other's figures), at the default worker count, WS=0. Memory is
read with psutil's memory_full_info (from /proc/PID/smaps) for the Gunicorn master and its
workers: once idle after start, once after a warm-up load that makes every worker serve the
ping/retrieval mix. Target: preload saves >= 40% of the web tier's total PSS.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.bundle import Bundle
from bench.client import PING, Client, seed_corpus
from bench.corpus import Corpus
from bench.load import run_load
from bench.report import Panel, Run, table, verdict

NAME = "memory"
CHUNKS = 10_000
MIB = 1024 * 1024
TARGET_SAVING = 0.40
DEFAULT = "preload + gc.freeze() (default)"
NO_PRELOAD = "no preload"
NO_FREEZE = "preload, no gc.freeze()"
# The rendered gunicorn.conf.py imports a pre_fork hook that calls gc.freeze() in the master
# before each fork; redefining pre_fork after the import removes just that.
VARIANTS: dict[str, tuple[dict[str, str], str]] = {  # name: (settings, gunicorn.conf.py extra)
    DEFAULT: ({}, ""),
    NO_PRELOAD: ({"GUNICORN_PRELOAD": "false"}, ""),
    NO_FREEZE: ({}, "def pre_fork(server, worker):  # bench.memory: no gc.freeze()\n    pass"),
}


def snapshot(bundle: Bundle) -> dict[str, Any]:
    master = bundle.web_master()
    workers = master.children()
    infos = {p.pid: p.memory_full_info() for p in [master, *workers]}
    worker_uss = [infos[p.pid].uss / MIB for p in workers]
    return {
        "workers": len(workers),
        "total_pss_mib": round(sum(i.pss for i in infos.values()) / MIB, 1),
        "master_pss_mib": round(infos[master.pid].pss / MIB, 1),
        "worker_uss_mib_mean": round(statistics.mean(worker_uss), 1),
        "worker_uss_mib": [round(x, 1) for x in worker_uss],
        "worker_rss_mib_mean": round(statistics.mean(infos[p.pid].rss / MIB for p in workers), 1),
    }


def seed(workdir: Path, data_dir: Path) -> tuple[str, str]:
    """10k chunks in DATA_DIR through a bundle of its own, so that no measured worker has served
    the seeding requests: (dataset id, API key)."""
    with Bundle(workdir, settings={"WS": "0"}, data_dir=data_dir) as bundle:
        bundle.start()
        client = Client(bundle.base_url, bundle.api_key)
        dataset_id, _ = seed_corpus(client, data_dir, Corpus().chunks(CHUNKS))
        return dataset_id, bundle.api_key


def measure(
    workdir: Path, data: tuple[Path, str, str], name: str, settings: dict[str, str], extra: str
) -> dict[str, Any]:
    data_dir, dataset_id, api_key = data
    with Bundle(
        workdir,
        settings={"WS": "0", **settings},
        data_dir=data_dir,
        api_key=api_key,
        gunicorn_extra=extra,
    ) as bundle:
        bundle.start()  # one /v1/system/healthz request
        idle = snapshot(bundle)
        client = Client(bundle.base_url, bundle.api_key)
        mix = [PING, client.retrieval_spec(Corpus().question(), [dataset_id])]
        load = run_load(bundle.base_url, mix, 16, 4.0)
        warm = snapshot(bundle)
        tree_pss = sum(p.memory_full_info().pss for p in bundle.tree()) / MIB
    print(
        f"  {name:32} idle {idle['total_pss_mib']:6.1f} MiB, after load "
        f"{warm['total_pss_mib']:6.1f} MiB PSS ({load.requests} requests, "
        f"{load.failed} failed)"
    )
    return {
        "variant": name,
        "gunicorn_conf_extra": extra,
        "settings": settings,
        "idle": idle,
        "after_load": warm,
        "bundle_tree_pss_mib": round(tree_pss, 1),
        "warmup_requests": load.requests,
        "warmup_failed": load.failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.parse_args(argv)
    run = Run(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        data = (data_dir, *seed(root / "seed", data_dir))
        rows = [
            measure(root / f"v{i}", data, name, settings, extra)
            for i, (name, (settings, extra)) in enumerate(VARIANTS.items())
        ]
    by_name = {r["variant"]: r for r in rows}
    base = by_name[NO_PRELOAD]["after_load"]["total_pss_mib"]
    saving = 1 - by_name[DEFAULT]["after_load"]["total_pss_mib"] / base
    no_freeze_saving = 1 - by_name[NO_FREEZE]["after_load"]["total_pss_mib"] / base
    idle_base = by_name[NO_PRELOAD]["idle"]["total_pss_mib"]
    idle_saving = 1 - by_name[DEFAULT]["idle"]["total_pss_mib"] / idle_base
    print()
    print(
        table(
            [
                "variant",
                "workers",
                "PSS idle MiB",
                "PSS loaded MiB",
                "worker USS MiB",
                "master PSS MiB",
                "tree PSS MiB",
            ],
            [
                [
                    r["variant"],
                    r["after_load"]["workers"],
                    r["idle"]["total_pss_mib"],
                    r["after_load"]["total_pss_mib"],
                    r["after_load"]["worker_uss_mib_mean"],
                    r["after_load"]["master_pss_mib"],
                    r["bundle_tree_pss_mib"],
                ]
                for r in rows
            ],
        )
    )
    outcome = verdict(saving, TARGET_SAVING)
    print(
        f"\npreload saves {saving:.1%} of the web tier's PSS after load (target >= 40%): "
        f"{outcome}; without gc.freeze() {no_freeze_saving:.1%}; at idle {idle_saving:.1%}"
    )
    names = [r["variant"] for r in rows]
    run.save(
        {
            "parameters": {"chunks": CHUNKS, "ws": 0, "warmup": "ping/retrieval mix, c=16, 4 s"},
            "variants": rows,
            "preload_saving": round(saving, 3),
            "preload_saving_without_gc_freeze": round(no_freeze_saving, 3),
            "preload_saving_idle": round(idle_saving, 3),
            "verdict": outcome,
        },
        [
            Panel(
                "web tier total PSS",
                "MiB",
                names,
                {
                    "idle": [r["idle"]["total_pss_mib"] for r in rows],
                    "after load": [r["after_load"]["total_pss_mib"] for r in rows],
                },
            ),
            Panel(
                "per-worker USS after load",
                "MiB",
                names,
                {"mean USS": [r["after_load"]["worker_uss_mib_mean"] for r in rows]},
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
