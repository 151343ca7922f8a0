"""The file system under DATA_DIR: private modes, staged uploads and their sweep, free space,
write probes and who holds a lock.

Modes: DATA_DIR and every folder below it 0700; the database, its WAL, SHM and writer lock and
every stored file 0600. New ones are created so; ``make_private`` fixes existing ones at start.

Staged uploads: an upload is copied into ``DATA_DIR/files/.staging/upload-<random>`` while its
writer holds an exclusive flock on the open file, and renamed to its final path inside the
database transaction that records it. A file there that nobody holds a lock on belongs to no
live writer (the kernel drops a dead process's locks), so ``sweep`` may remove it at any time,
even while other workers are copying their own uploads; a writer whose new file was removed
before it could lock it makes another (``stage``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import uuid
from pathlib import Path
from typing import IO

from api.storage.errors import Unavailable

DIR_MODE = 0o700
FILE_MODE = 0o600
STAGING = ".staging"  # under DATA_DIR/files; dataset folders are uuid hex, so it never collides
UPLOAD_PREFIX = "upload-"
PROBE_PREFIX = ".healthz-"
STAGE_ATTEMPTS = 8  # new staged files made while sweeps remove them before they are locked


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700, or fix the mode of an existing one."""
    if not path.parent.exists():
        private_dir(path.parent)
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    _chmod(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Give an existing file mode 0600 (no-op when it is missing or already private)."""
    _chmod(path, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:
        pass  # owned by another user: nothing this process may do about it; the owner's can


def create_private(path: Path) -> None:
    """Create an empty file with mode 0600 unless it exists (then fix its mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        private_file(path)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600 for a new file, fixing the mode of an existing one."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    with contextlib.suppress(PermissionError):
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    return fd


# --- staged uploads ----------------------------------------------------------------------


def staging_dir(files_dir: Path) -> Path:
    return files_dir / STAGING


def stage(files_dir: Path) -> tuple[Path, IO[bytes]]:
    """A new staged file, open for writing and locked (exclusive flock) until closed.

    Between creating the file and locking it, a ``sweep`` (another worker starting) may find it
    unlocked and remove it: it holds the lock until it has, so once this process has the lock
    the file is either still linked or gone for good, and then a new one is made (at most
    STAGE_ATTEMPTS: one sweep lists the folder once, so it takes one such file at most).
    Unchecked, the upload was copied into the removed file and failed as it was renamed into
    place: a 503 (seen once, 77 files in one request while a worker started)."""
    folder = staging_dir(files_dir)
    private_dir(folder)
    for _ in range(STAGE_ATTEMPTS):
        path = folder / f"{UPLOAD_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits while a sweep holds it
        if os.fstat(fd).st_nlink:
            return path, os.fdopen(fd, "wb")
        os.close(fd)  # a sweep removed it
    raise FileNotFoundError(errno.ENOENT, "staged files kept being removed by sweeps", str(folder))


def sweep(files_dir: Path) -> int:
    """At a process's start: make ``files_dir`` and its folders private (as an older version may
    have left them) and remove staged files no live process holds; returns how many."""
    try:
        folders = [e.path for e in os.scandir(files_dir) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    private_dir(files_dir)
    for folder in folders:
        _chmod(Path(folder), DIR_MODE)
    try:
        entries = list(os.scandir(staging_dir(files_dir)))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.startswith((UPLOAD_PREFIX, PROBE_PREFIX)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # renamed into place or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


# --- probes ------------------------------------------------------------------------------


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def probe_write(folder: Path) -> None:
    """Raise Unavailable("storage", ...) naming the cause unless ``folder`` takes a file."""
    problem = write_problem(folder)
    if problem is not None:
        raise Unavailable("storage", f"{folder} is not writable: {problem}")


def write_problem(folder: Path) -> str | None:
    """Create, write, sync and remove a small file in ``folder``: None when that works, else
    the cause. The file is removed even when a step fails."""
    path = folder / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        private_dir(folder)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.write(fd, b"ok" * 2048)  # one page: a full disk refuses it
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return describe(exc)
    finally:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    return None


def describe(exc: OSError) -> str:
    """An OSError as a cause an operator acts on."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device (free disk space)"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded (raise the quota or free space)"
    if exc.errno == errno.EROFS:
        return "read-only file system (remount it read-write)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.strerror}); give the service's user write access"
    return f"{exc.strerror or exc} (errno {exc.errno})"


# --- locks -------------------------------------------------------------------------------


def flock_holders(path: Path) -> list[int]:
    """Pids holding a flock on ``path`` according to /proc/locks (empty when unknown; a pid
    from another PID namespace may read 0)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.readlines()
    except OSError:
        return []
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    holders = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":  # "N: -> FLOCK ..." lines are waiters
            continue
        try:
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                holders.append(int(parts[4]))
        except ValueError:
            continue
    return holders


def read_identity(path: Path) -> tuple[int, int] | None:
    """The (st_dev, st_ino) recorded in ``path`` by ``write_identity``; None when absent."""
    try:
        dev, ino = path.read_text(encoding="ascii").split()
        return int(dev), int(ino)
    except (OSError, ValueError):
        return None


def write_identity(path: Path, identity: tuple[int, int]) -> None:
    """Record a file's identity in ``path`` (best effort: a full disk only loses the record)."""
    with contextlib.suppress(OSError):
        fd = open_private(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{identity[0]} {identity[1]}\n".encode("ascii"), 0)
        finally:
            os.close(fd)


def in_use(identity: tuple[int, int]) -> bool:
    """Whether a process this one can see (itself included) has the file with this identity
    (st_dev, st_ino) open, found through /proc/<pid>/fd. Used only when a database file was
    swapped, so its cost (a stat per open file) is paid rarely."""
    try:
        pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            fds = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                st = os.stat(fd.path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == identity:
                return True
    return False


def held_since(stamp: Path, busy: bool) -> float | None:
    """Shared memory of how long a lock has been seen busy, kept in ``stamp``'s mtime.

    Called by each probe of the lock: ``busy`` False removes the stamp (returns None); True
    creates it when missing and returns the time it was first created (the first busy
    observation since the last free one). None when the stamp cannot be kept."""
    if not busy:
        with contextlib.suppress(OSError):
            stamp.unlink(missing_ok=True)
        return None
    try:
        os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        return os.stat(stamp).st_mtime
    except OSError:
        return None
