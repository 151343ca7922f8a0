"""Health tells the truth, and storage faults do not take the service down: the REAL bundle
(render_config.py, supervisord via the launcher, Gunicorn, task executors) over HTTP on loopback,
with real faults: an invalid setting, a process holding the writer lock, the database deleted or
replaced, a worker killed while storing an upload, a full and a read-only file system (tmpfs).
Each test prints its figures."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import http.client
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import StartBundle
from support.ragflow_client import API_KEY, create_dataset, multipart, upload
from support.supervised import APP_DIR, SupervisedRun
from support.waiting import wait_for

from api.routes.system import CACHE_SECONDS
from api.storage import fs
from api.storage.sqlite.connections import STALL_SECONDS

HEALTHZ = "/v1/system/healthz"


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, Any], float]:
    """(HTTP status, JSON body, seconds) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        all_headers = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        return response.status, payload, time.monotonic() - started
    finally:
        conn.close()


def new_dataset(port: int, name: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = request(
        port, "POST", "/api/v1/datasets", json.dumps({"name": name}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    return status, body


def upload_answer(port: int, dataset_id: str, files: dict[str, bytes]) -> tuple[int, Any]:
    boundary, body = multipart(files)
    status, answer, _ = request(
        port, "POST", f"/api/v1/datasets/{dataset_id}/documents", body,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    return status, answer


def healthz(port: int) -> tuple[int, dict[str, Any], float]:
    return request(port, "GET", HEALTHZ)


def wait_health(port: int, status: int, timeout: float, what: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        code, body, _ = healthz(port)
        return body if code == status else None

    return wait_for(probe, timeout, what)


def data_dir(run: SupervisedRun) -> Path:
    return Path(run.env["DATA_DIR"])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- invalid configuration -------------------------------------------------------------------


def test_an_invalid_application_setting_makes_healthz_answer_503(
    start_bundle: StartBundle,
) -> None:
    """Issue row: an application setting the app refuses made healthz answer HTTP 200 (code 500
    in the body), so an httpGet probe passed. The renderer refuses such values now (one settings
    contract), so the bad value arrives as it still can: the rendered environment= edited after
    rendering."""
    rendered, edited = 'MAX_CONTENT_LENGTH="1073741824"', 'MAX_CONTENT_LENGTH="2048GB"'

    def edit(conf: str) -> str:
        assert rendered in conf
        return conf.replace(rendered, edited)

    run = start_bundle(WS="0", edit=edit)
    status, body, seconds = healthz(run.port)
    print(
        f"healthz with MAX_CONTENT_LENGTH=2048GB: HTTP {status} in {seconds * 1000:.1f} ms {body}"
    )
    assert status == 503
    assert body["status"] == "nok" and body["config"] == "nok"
    assert "MAX_CONTENT_LENGTH='2048GB': invalid; accepted: " in body["_meta"]["config"]["error"]
    code, answer, _ = request(run.port, "GET", "/api/v1/datasets")
    assert code == 503 and answer["code"] == 500
    assert answer["message"].startswith("Server misconfigured: MAX_CONTENT_LENGTH")
    env = {**run.env, "PYTHONPATH": str(APP_DIR)}
    probe = subprocess.run(
        [sys.executable, "-m", "api.healthcheck"], cwd=APP_DIR, env=env,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert probe.returncode == 1 and "HTTP 503" in probe.stderr, probe.stderr
    live = subprocess.run(
        [sys.executable, "-m", "api.healthcheck", "--live"], cwd=APP_DIR, env=env,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert live.returncode == 0, live.stderr  # liveness does not depend on the configuration


# --- the writer lock -------------------------------------------------------------------------


@contextlib.contextmanager
def lock_holder(
    path: Path, user: str | None = None, inside: SupervisedRun | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Another process holding an exclusive flock on `path` until the block ends; `inside`: in
    that run's PID namespace (as another program in the container would be)."""
    code = (
        "import fcntl, sys\n"
        "try:\n"
        f"    f = open({str(path)!r}, 'ab')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.strerror, flush=True); sys.exit(3)\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    prefix = []
    if user is not None:
        group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        prefix = ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups"]
    if inside is not None:
        prefix = ["nsenter", f"--target={inside.pid1().pid}", "--pid", "--mount", *prefix]
    holder = subprocess.Popen(
        [*prefix, sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd="/",
    )  # fmt: skip
    try:
        yield holder
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(holder.pid).children(recursive=True):
                child.kill()  # nsenter's child does not die with nsenter
        holder.kill()
        holder.wait(10)


def namespace_pid(nsenter_pid: int) -> int:
    """The pid, in the namespace it entered, of the program nsenter runs (nsenter forks it)."""

    def innermost() -> int | None:
        for child in psutil.Process(nsenter_pid).children():
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("NSpid:") and len(line.split()) > 2:
                        return int(line.split()[-1])
        return None

    return wait_for(innermost, 10, "the lock holder to run inside the namespace")


def test_writer_lock_held_by_another_process_is_reported_fast_and_named(
    start_bundle: StartBundle,
) -> None:
    """Issue row: another process holds ragflow.db.writer-lock: every write waited 30 s then
    failed, and healthz said ok. Now healthz answers within a second at every poll, reports
    writes blocked (naming the holder) once the lock has been held STALL_SECONDS, the blocked
    write fails with a 503 naming the lock and its holder, and all recovers when it is let go."""
    run = start_bundle(WS="0")
    lock = data_dir(run) / "ragflow.db.writer-lock"
    assert healthz(run.port)[0] == 200
    blocked_write: list[tuple[int, dict[str, Any]]] = []
    with lock_holder(lock, inside=run) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        holder_pid = namespace_pid(holder.pid)
        writer = threading.Thread(target=lambda: blocked_write.append(new_dataset(run.port, "w")))
        writer.start()
        slowest = 0.0

        def reported() -> dict[str, Any] | None:
            nonlocal slowest
            code, body, seconds = healthz(run.port)
            slowest = max(slowest, seconds)
            return body if code == 503 else None

        body = wait_for(reported, STALL_SECONDS + 10, "healthz to report writes blocked")
        detected = time.monotonic() - held_at
        assert body["writes"] == "nok" and body["db"] == "ok"
        assert f"held by pid {holder_pid} for " in body["_meta"]["writes"]["error"]
        writer.join(60)
        waited = time.monotonic() - held_at
    print(
        f"writer lock held by pid {holder_pid}: healthz 503 after {detected:.1f} s, slowest "
        f"healthz {slowest * 1000:.0f} ms; the blocked write answered after {waited:.1f} s: "
        f"{blocked_write}"
    )
    assert slowest < 1.0
    ((status, answer),) = blocked_write
    assert status == 503 and answer["code"] == 500
    assert "Writes are blocked: the database writer lock" in answer["message"]
    assert f"held by pid {holder_pid} for more than 30 s" in answer["message"]
    wait_health(run.port, 200, 10, "healthz to recover once the lock is released")
    assert new_dataset(run.port, "after")[1]["code"] == 0


def test_another_local_user_cannot_touch_the_data_files(start_bundle: StartBundle) -> None:
    """Issue rows: ragflow.db and WAL were 0644 (any local user read every tenant's chunks) and
    another user could hold the writer lock. DATA_DIR is 0700 and every data file 0600, also
    when an older version left them wider."""
    stale = start_bundle(WS="0")
    data = data_dir(stale)
    dataset = create_dataset(stale.port)
    upload(stale.port, dataset, {"private.txt": b"tenant secret"})
    stale.kill()
    old_file = next((data / "files" / dataset).iterdir())
    assert mode(old_file) == 0o600  # stored files were always created 0600 ...
    for path in [data, *data.rglob("*")]:  # ... the rest as an older version with umask 022 left it
        if path.is_dir():
            path.chmod(0o755)
        elif path.name.startswith("ragflow.db"):
            path.chmod(0o644)
    run = start_bundle.again(stale)  # type: ignore[attr-defined]
    assert healthz(run.port)[0] == 200
    upload(run.port, dataset, {"second.txt": b"tenant secret"})
    modes = {str(p.relative_to(data)): oct(mode(p)) for p in [data, *data.rglob("*")]}
    print(f"modes after start: {modes}")
    assert mode(data) == 0o700 and mode(data / "files") == 0o700
    for name in ("ragflow.db", "ragflow.db-wal", "ragflow.db-shm", "ragflow.db.writer-lock"):
        assert mode(data / name) == 0o600, name
    stored = sorted((data / "files" / dataset).iterdir())
    assert len(stored) == 2 and all(mode(p) == 0o600 for p in stored)
    with lock_holder(data / "ragflow.db.writer-lock", user="nobody") as holder:
        assert holder.stdout is not None and holder.stdout.readline().split()[0] == "refused"
    for secret in (data / "ragflow.db", data / "ragflow.db-wal", old_file):
        read = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", str(secret)],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert read.returncode != 0 and b"Permission denied" in read.stderr


# --- the database file deleted or replaced ---------------------------------------------------


def test_database_deleted_while_running_is_refused_and_nothing_is_written(
    start_bundle: StartBundle,
) -> None:
    """Issue row: after `rm ragflow.db`, some workers kept writing to the deleted file (23 of 60
    later requests failed, later writes were lost). Now every request that needs the database
    fails with a 503 naming the cause, healthz says so, no process (web or executor) writes to
    the deleted file, and a restart refuses to start on an empty database in its place."""
    run = start_bundle(WS="1", TASK_HEARTBEAT_SECONDS="1")
    data = data_dir(run)
    dataset = create_dataset(run.port)
    db = data / "ragflow.db"
    with open(db, "rb") as opened:
        wal = data / "ragflow.db-wal"

        def footprint() -> tuple[Any, ...]:
            st, wst = os.fstat(opened.fileno()), os.stat(wal)
            return st.st_size, st.st_mtime_ns, wst.st_size, wst.st_mtime_ns

        db.unlink()
        before = footprint()
        answers = []
        for number in range(30):
            answers.append(new_dataset(run.port, f"after-delete-{number}"))
            answers.append(request(run.port, "GET", "/api/v1/datasets")[:2])
            answers.append(upload_answer(run.port, dataset, {"late.txt": b"late"}))
        status, body, seconds = healthz(run.port)
        wait_for(lambda: "cannot claim tasks" in run.stderr() + run.stdout(), 15,
                 "the executor to log that it cannot use the database")  # fmt: skip
        after = footprint()
    codes = {(code, answer["code"]) for code, answer in answers}
    print(
        f"90 requests after the delete: {codes}; healthz HTTP {status} in {seconds * 1000:.0f} ms"
    )
    assert codes == {(503, 500)}
    messages = {a["message"].split(" (see")[0].split(". ")[0] for _, a in answers}
    print(f"their messages: {messages}")
    assert all(" was deleted" in message or "it was deleted" in message for message in messages)
    assert status == 503 and body["db"] == "nok" and "was deleted" in body["_meta"]["db"]["error"]
    assert after == before, "something wrote to the deleted database or its WAL"
    assert not db.exists()
    assert [p for p in data.rglob("*") if p.is_file() and "files" in p.parts] == []
    run.ctl("restart", "web")
    body = wait_health(run.port, 503, 30, "the restarted web to answer healthz")
    assert (
        "is missing but ragflow.db.writer-lock shows that one existed"
        in (body["_meta"]["db"]["error"])
    )
    assert not db.exists()


def test_database_replaced_while_running_is_refused_until_the_original_is_back(
    start_bundle: StartBundle,
) -> None:
    """Workers that had the database open and workers that open it after the swap refuse
    alike (they would share the old file's WAL); the original back at its path recovers."""
    run = start_bundle(WS="0", GUNICORN_WORKERS="3")
    data = data_dir(run)
    db = data / "ragflow.db"
    create_dataset(run.port)  # one worker has the database open, the others not yet
    os.link(db, data / "original.db")
    other = data / "other.db"
    other.write_bytes(db.read_bytes())
    os.replace(other, db)
    answers = [new_dataset(run.port, f"into-the-replacement-{n}") for n in range(20)]
    health = healthz(run.port)
    print(f"after replacing ragflow.db: 20 writes, first {answers[0]}; healthz HTTP {health[0]}")
    for status, answer in answers:
        assert status == 503 and "was replaced by another file" in answer["message"], answer
    assert health[0] == 503 and health[1]["db"] == "nok"
    os.replace(data / "original.db", db)  # the same file (inode) back at its path
    wait_health(run.port, 200, 10, "healthz to recover with the original database back")
    for n in range(6):
        assert new_dataset(run.port, f"after-{n}")[1]["code"] == 0


# --- an interrupted upload -------------------------------------------------------------------


def test_a_worker_killed_while_storing_an_upload_leaves_no_file_once_replaced(
    start_bundle: StartBundle,
) -> None:
    """Issue row: a worker killed while copying an upload left a 135 MB `.upload-*` file until
    the dataset was deleted. The worker Gunicorn starts in its place sweeps staged uploads
    before it serves (api.app.App.warm), sparing those a live worker writes."""
    run = start_bundle(WS="0", GUNICORN_WORKERS="2")
    data = data_dir(run)
    dataset = create_dataset(run.port)
    staging = data / "files" / fs.STAGING
    answers: list[Any] = []

    def big_upload() -> None:
        try:
            answers.append(upload_answer(run.port, dataset, {"big.txt": b"x" * (135 << 20)}))
        except (OSError, http.client.HTTPException) as exc:
            answers.append(repr(exc))

    client = threading.Thread(target=big_upload)
    client.start()

    def staged_and_held() -> tuple[Path, list[int]] | None:
        for path in staging.glob(f"{fs.UPLOAD_PREFIX}*") if staging.exists() else []:
            if holders := fs.flock_holders(path):
                return path, holders
        return None

    path, holders = wait_for(staged_and_held, 60, "the upload to be copied into staging")
    for pid in holders:
        os.kill(pid, signal.SIGKILL)
    client.join(60)
    print(f"killed worker {holders} while it stored {path.name}: {answers}")
    wait_for(lambda: not path.exists(), 30, "the replacement worker to remove the staged upload")
    assert list(staging.iterdir()) == []
    assert not list((data / "files" / dataset).iterdir())
    wait_health(run.port, 200, 30, "the bundle")


def test_the_sweep_spares_files_a_live_process_is_writing(tmp_path: Path) -> None:
    files = tmp_path / "files"
    live_path, live = fs.stage(files)
    dead_path, dead = fs.stage(files)
    dead.close()  # its writer is gone: the lock went with it
    code = (
        "import fcntl, sys, time\n"
        f"f = open({str(live_path)!r}, 'rb')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    print('busy')\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=30, check=True)  # fmt: skip
    assert other.stdout.strip() == "busy"
    assert fs.sweep(files) == 1
    assert live_path.exists() and not dead_path.exists()
    live.close()
    assert fs.sweep(files) == 1 and not live_path.exists()


def test_a_sweep_between_creating_and_locking_a_staged_file_costs_a_new_file_not_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker starting sweeps the staging folder just after this one created a staged
    file and before it locked it: the sweep removes that file (nobody held it), and staging
    makes another instead of copying the upload into the removed one."""
    files = tmp_path / "files"
    lock = fcntl.flock
    swept: list[int] = []

    def sweep_first(fd: int, operation: int) -> None:
        if not swept:  # the staging process's first lock: a sweep gets in before it
            swept.append(0)
            swept[0] = fs.sweep(files)
        lock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", sweep_first)  # the module fs locks through
    path, out = fs.stage(files)
    monkeypatch.undo()
    assert swept == [1]  # the first staged file, removed
    with out:
        out.write(b"upload")
        out.flush()
        assert path.exists() and os.fstat(out.fileno()).st_nlink == 1
        assert fs.sweep(files) == 0  # held: spared
    assert path.read_bytes() == b"upload"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --- a full and a read-only file system --------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs mounted at tmp_path/data (root only); unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (the test environment runs as root)")
    mount = tmp_path / "bundle0" / "data"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mount)],
                   check=True, timeout=30)  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], timeout=30, check=False)


def fill(path: Path) -> None:
    with open(path, "wb") as out:
        block = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            for _ in range(1024):  # at most 1 GiB; the tmpfs holds 64 MB
                out.write(block)
                out.flush()


def litter(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if "healthz" in p.name
                  or p.name.startswith(fs.UPLOAD_PREFIX))  # fmt: skip


def test_full_disk_is_reported_leaves_no_litter_and_recovers(
    start_bundle: StartBundle, small_tmpfs: Path
) -> None:
    """Issue row: a failing healthz on a full disk left a 0-byte `.healthz-*` file each time."""
    run = start_bundle(WS="0", MIN_FREE_DISK="8MB")
    try:
        dataset = create_dataset(run.port)
        filler = small_tmpfs / "filler"
        fill(filler)
        body = wait_health(run.port, 503, 10, "healthz to see the full disk")
        probes, until = 0, time.monotonic() + 3 * CACHE_SECONDS + 0.5

        def probed_past_three_cache_periods() -> bool:  # so several probes ran on a full disk
            nonlocal probes
            assert healthz(run.port)[0] == 503
            probes += 1
            return time.monotonic() >= until

        wait_for(probed_past_three_cache_periods, 10, "healthz answers over three cache periods")
        upload_status, answer = upload_answer(run.port, dataset, {"a.txt": b"y" * 100_000})
        print(f"full disk: {probes} healthz {body}; upload HTTP {upload_status} {answer}")
        assert body["disk"] == "nok" and body["storage"] == "nok"
        assert "below MIN_FREE_DISK=8388608" in body["_meta"]["disk"]["error"]
        assert "no space left" in body["_meta"]["storage"]["error"]
        assert upload_status == 503 and "no space left" in answer["message"]
        assert litter(small_tmpfs) == []
        filler.unlink()
        wait_health(run.port, 200, 10, "healthz to recover once space is free")
        assert upload_answer(run.port, dataset, {"b.txt": b"fine"})[1]["code"] == 0
        assert litter(small_tmpfs) == []
    finally:
        run.kill()  # before the fixture unmounts the volume


@pytest.fixture
def ext4_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB ext4 file system (loop device, errors=remount-ro) at tmp_path/bundle0/data."""
    if os.geteuid() != 0:
        pytest.fail("mounting a loop device needs root (the test environment runs as root)")
    image = tmp_path / "volume.img"
    with open(image, "wb") as out:
        out.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)
    mount = tmp_path / "bundle0" / "data"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)],
                   check=True, timeout=60)  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], timeout=60, check=False)


def test_file_system_gone_read_only_is_reported_and_writes_fail_clearly(
    start_bundle: StartBundle, ext4_volume: Path
) -> None:
    """The volume under DATA_DIR hits an error and the kernel turns it read-only under the
    running service (errors=remount-ro): healthz reports it at once, writes fail with a 503
    naming the cause, reads go on where a connection is open, nothing raises a traceback. (The
    kernel keeps such a file system read-only until it is unmounted: recovery needs the volume
    fixed and a restart.)"""
    run = start_bundle(WS="0", MIN_FREE_DISK="1MB")
    try:
        dataset = create_dataset(run.port)
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(ext4_volume)],
                                capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        device = Path(source.stdout.strip()).name
        Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("1")
        body = wait_health(run.port, 503, 10, "healthz to see the read-only file system")
        status, answer = new_dataset(run.port, "on-ro")
        upload_status, uploaded = upload_answer(run.port, dataset, {"a.txt": b"late"})
        print(
            f"read-only: healthz {body}; write HTTP {status} {answer}; upload HTTP {upload_status}"
        )
        assert body["writes"] == "nok" and body["storage"] == "nok"
        assert "read-only file system" in body["_meta"]["storage"]["error"]
        # a worker with its connection open reports the failed write probe; one that has to
        # open the database first reports that it cannot (and skips nothing: both say why)
        assert "read-only file system" in body["_meta"]["writes"]["error"]
        assert status == 503 and answer["code"] == 500 and "read-only" in answer["message"]
        assert upload_status == 503 and "read-only file system" in uploaded["message"]
        for _ in range(4):  # a worker with its connection open reads on; one without says why
            code, listed, _ = request(run.port, "GET", "/api/v1/datasets")
            assert (code, listed["code"]) == (200, 0) or (
                code == 503 and "read-only file system" in listed["message"]
            ), listed
        assert "Traceback" not in run.stdout() + run.stderr()
    finally:
        run.kill()  # before the fixture unmounts the volume
