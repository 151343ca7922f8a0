"""Build and run the bundle's image with buildah/podman on a machine without a Docker engine.

Test support for ``tests/test_container.py``:

- vfs storage, chroot isolation, runc with cgroupfs and explicit ulimits on every call;
- a local Debian bookworm + python3 base image made with debootstrap (no registry is reachable),
  cached by date under ``CACHE_DIR`` so only the first run of a day pays for it;
- the host CA bundle and a uv cache are mounted into the build's RUN steps only: they are
  properties of this machine, never part of the Dockerfile.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.waiting import wait_for

CACHE_DIR = Path(os.environ.get("RAGFLOW_BUNDLE_TEST_CACHE", "/var/cache/ragflow-bundle-tests"))
TOOLS = ("buildah", "podman", "runc", "debootstrap")
BASE_REPO = "localhost/ragflow-bundle-test-base"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

STORAGE = ("--storage-driver", "vfs")
PODMAN = ("podman", *STORAGE, "--runtime", "runc", "--cgroup-manager", "cgroupfs")
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024")


class ToolError(RuntimeError):
    """A container tool failed; the message carries the command and its output."""


def run(cmd: Sequence[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline, capturing text output."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise ToolError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def install_tools() -> str | None:
    """Install missing tools with apt-get when root; return why not, or None when all present."""
    missing = missing_tools()
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"{', '.join(missing)} not installed and not root (run `make system-deps` as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, env=env, check=False
        )
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}"
    still = missing_tools()
    return f"{', '.join(still)} still missing after apt-get install" if still else None


def debian_mirror(
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
    sources_list: Path = Path("/etc/apt/sources.list"),
    suite: str = SUITE,
) -> str:
    """The Debian archive URI this machine's apt sources use for ``suite``."""
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")):
            for stanza in path.read_text().split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "#")):
                        fields[key.strip().lower()] = value.strip()
                if suite in fields.get("suites", "").split() and "uris" in fields:
                    return fields["uris"].split()[0]
    if sources_list.is_file():
        for line in sources_list.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb":
                uri_at = 2 if words[1].startswith("[") else 1
                if words[uri_at + 1 :][:1] == [suite]:
                    return words[uri_at]
    raise ToolError(f"no apt source for Debian {suite} in {sources_dir} or {sources_list}")


def image_exists(ref: str) -> bool:
    return run([*PODMAN, "image", "exists", ref], timeout=60, check=False).returncode == 0


def ensure_base_image(today: datetime.date | None = None) -> str:
    """Return a local Debian + python3 image ref, bootstrapping it at most once a day."""
    stamp = (today or datetime.date.today()).strftime("%Y%m%d")
    ref = f"{BASE_REPO}:{SUITE}-{stamp}"
    if image_exists(ref):
        return ref
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"base-{SUITE}-{stamp}.tar"
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            rootfs = Path(tmp) / "rootfs"
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    str(rootfs),
                    debian_mirror(),
                ],
                timeout=900,
            )
            # Trim what an image never needs: apt lists and caches, docs and man pages.
            for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
                shutil.rmtree(rootfs / junk, ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
            partial.rename(tarball)
        for old in CACHE_DIR.glob(f"base-{SUITE}-*.tar"):
            if old != tarball:
                old.unlink()
    run([*PODMAN, "import", str(tarball), ref], timeout=300)
    listed = run([*PODMAN, "images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPO], timeout=60)
    for old_ref in set(listed.stdout.split()) - {ref}:
        remove_image(old_ref)  # earlier days' bases
    return ref


def build_image(context: Path, tag: str, base_image: str, timeout: float = 900) -> float:
    """Build ``context``'s Dockerfile with buildah; return the build time in seconds."""
    uv_cache = CACHE_DIR / "uv-cache"
    uv_cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        "buildah",
        *STORAGE,
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--format",
        "docker",  # keeps HEALTHCHECK (the OCI format drops it)
        "--layers=false",
        "-v",
        f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
        "-v",
        f"{uv_cache}:/root/.cache/uv",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "-t",
        tag,
        str(context),
    ]
    started = time.monotonic()
    run(cmd, timeout=timeout)
    return time.monotonic() - started


def remove_image(ref: str) -> None:
    run([*PODMAN, "rmi", "-f", ref], timeout=120, check=False)


def image_size(ref: str) -> int:
    out = run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", ref], timeout=60).stdout
    return int(out.strip())


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([*PODMAN, *args], timeout=timeout, check=check)


def start_container(
    name: str,
    image: str,
    env: dict[str, str],
    args: Sequence[str] = (),
    flags: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``podman run -d`` with the host network and this machine's required flags."""
    env_flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
    return podman(
        "run", "-d", "--network", "host", *ULIMITS, *flags, *env_flags, "--name", name, image,
        *args, timeout=180,
    )  # fmt: skip


def remove_container(name: str) -> None:
    podman("rm", "-f", "-v", "-t", "0", name, timeout=120, check=False)  # -v: anonymous volumes


def inspect(name: str) -> dict[str, object]:
    data = json.loads(podman("inspect", name).stdout)
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ToolError(f"podman inspect {name}: unexpected output {data!r}")
    state = data[0]
    return state


def container_state(name: str) -> dict[str, object]:
    state = inspect(name)["State"]
    if not isinstance(state, dict):
        raise ToolError(f"podman inspect {name}: no State")
    return state


def wait_exited(name: str, deadline_s: float) -> int:
    """Poll until the container has exited; return its exit code."""

    def exited() -> dict[str, Any] | None:
        state = container_state(name)
        return state if state.get("Status") in ("exited", "stopped") else None

    code = wait_for(exited, deadline_s, f"{name} to exit").get("ExitCode")
    if not isinstance(code, int):
        raise ToolError(f"{name}: exit code {code!r}")
    return code


def logs(name: str) -> str:
    """The container's stdout and stderr in the order it wrote them (one pipe for both)."""
    proc = subprocess.run(
        [*PODMAN, "logs", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolError(f"podman logs {name} exited {proc.returncode}: {proc.stdout[-2000:]}")
    return proc.stdout


def exec_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, *cmd, timeout=60, check=check)
