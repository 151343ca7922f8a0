"""``render_config.py``: the only place that reads the environment and files,
writes files, prints and chooses exit codes (0 ok, 1 reference drift, 2 bad
configuration)."""

from __future__ import annotations

import argparse
import difflib
import grp
import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from renderer.explain import explain_text, settings_markdown
from renderer.render import (
    GUNICORN_CONF,
    SUPERVISORD_CONF,
    RenderedFile,
    render,
    stop_budget,
    stop_plan,
)
from renderer.resources import detect_cpu_count
from shared.settings import (
    SETTINGS,
    ConfigError,
    Host,
    Resolved,
    parse_env_file,
    resolve,
    unknown_variable_warnings,
)

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "deploy" / "supervisor"
DOCS_FILE = ROOT / "docs" / "settings.md"
PROG = "render_config.py"
# Reference renders must not depend on the machine: every machine fact is unknown.
REFERENCE_HOST = Host(cpu_count=None, python=None, app_dir=None, user=None, nginx=None)
# Where nginx lives when /usr/sbin is not on a user's PATH (Debian's package).
NGINX_SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render supervisord.conf (and gunicorn.conf.py in production) from "
        "environment variables. See docs/settings.md or --explain.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--production-mode",
        dest="mode",
        action="store_const",
        const="production",
        help="production mode (overrides RAGFLOW_MODE)",
    )
    mode.add_argument(
        "--dev-mode",
        dest="mode",
        action="store_const",
        const="dev",
        help="dev mode: Werkzeug reloader + debugger (overrides RAGFLOW_MODE)",
    )
    parser.add_argument(
        "--env-file", metavar="FILE", help="KEY=VALUE file; the environment overrides it"
    )
    parser.add_argument(
        "--output-dir", metavar="DIR", help="where to write the files (default: SUPERVISOR_RUN_DIR)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings (value + source) as JSON; write nothing",
    )
    action.add_argument(
        "--explain",
        nargs="?",
        const="text",
        choices=("text", "markdown"),
        help="print the settings table with defaults and help",
    )
    action.add_argument(
        "--check",
        action="store_true",
        help="render deploy/supervisor/*.env and docs/settings.md; "
        "exit 1 with a diff when the committed files differ",
    )
    action.add_argument(
        "--update-reference",
        action="store_true",
        help="rewrite the committed reference renders and docs/settings.md",
    )
    action.add_argument(
        "--exec",
        action="store_true",
        help="render, then exec PYTHON_BIN -m supervise.launcher -c supervisord.conf",
    )
    return parser


def launcher_argv(python: str, supervisord_conf: str) -> list[str]:
    """The command --exec replaces this process with (supervisord in-process, PID 1)."""
    return [python, "-m", "supervise.launcher", "-c", supervisord_conf]


def machine_host() -> Host:
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    search = os.pathsep.join(filter(None, [os.environ.get("PATH", ""), NGINX_SEARCH_PATH]))
    return Host(
        cpu_count=detect_cpu_count,
        python=sys.executable,
        app_dir=str(ROOT),
        user=user,
        nginx=shutil.which("nginx", path=search),
    )


def user_ids(user: str) -> tuple[int, int, frozenset[int]]:
    """uid, primary gid and every group id of an existing user name or numeric uid."""
    entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)}
    return entry.pw_uid, entry.pw_gid, frozenset(groups)


def allowed(st: os.stat_result, uid: int, gids: frozenset[int], bits: int) -> bool:
    """Whether ``uid`` (in groups ``gids``) has every permission in ``bits`` (0o7: rwx) here."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        shift = 6
    elif st.st_gid in gids:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & bits == bits


@dataclass(frozen=True)
class Directory:
    label: str  # the setting or flag that names it, for error messages
    path: Path
    mode: int  # for a directory this run creates
    programs_write: bool = True  # False: the programs only read the rendered files there


def bundle_directories(resolved: Resolved, output_dir: str) -> list[Directory]:
    """Every directory the bundle writes to: the programs run as SUPERVISOR_RUN_USER there."""
    values = resolved.values
    found = [
        Directory("--output-dir", Path(output_dir), 0o750, programs_write=False),
        Directory("SUPERVISOR_RUN_DIR", Path(str(values["SUPERVISOR_RUN_DIR"])), 0o750),
        Directory("DATA_DIR", Path(str(values["DATA_DIR"])), 0o700),
    ]
    if values["LOG_TARGET"] == "file":
        found.append(Directory("LOG_DIR", Path(str(values["LOG_DIR"])), 0o750))
    unique: dict[Path, Directory] = {}
    for directory in reversed(found):  # a directory the programs write to wins
        unique.setdefault(directory.path, directory)
    return list(reversed(unique.values()))


def run_user_problems(resolved: Resolved, directories: Sequence[Directory], user: str) -> list[str]:
    """What SUPERVISOR_RUN_USER, which every program runs as, could not reach: the interpreter,
    the application, a directory the programs write to (or the way to any of them)."""
    uid, _, gids = user_ids(user)
    needs = [
        ("PYTHON_BIN", str(resolved.values["PYTHON_BIN"]), 0o5, "run"),
        ("APP_DIR", str(resolved.values["APP_DIR"]), 0o5, "read"),
        *((d.label, str(d.path), 0o3 if d.programs_write else 0o1, "write to" if
           d.programs_write else "enter") for d in directories),
    ]  # fmt: skip
    problems = []
    for label, path, bits, verb in needs:
        target = Path(os.path.realpath(path))
        for step, step_bits in [*((a, 0o1) for a in reversed(target.parents)), (target, bits)]:
            try:
                st = step.stat()
            except OSError:
                break  # missing: created for the user (or creating it fails with the reason)
            if not allowed(st, uid, gids, step_bits):
                fix = (
                    f"chown {user} {step}, or a path that does not exist yet: it is then "
                    "created for that user"
                    if step == target and verb == "write to"
                    else "e.g. not under a private home directory"
                )
                problems.append(
                    f"{label}={path!r}: SUPERVISOR_RUN_USER={user!r}, which every program runs "
                    f"as, cannot {verb} it: {step} is owned by {_user_name(st.st_uid)} with mode "
                    f"{stat.S_IMODE(st.st_mode):04o}; accepted: a path that user can {verb} ({fix})"
                )
                break
    return problems


def create_directories(directories: Sequence[Directory], owner: tuple[int, int] | None) -> None:
    """Create the missing directories (and their parents), each new leaf with its mode and, when
    root starts the bundle for another user, owned by that user."""
    for directory in directories:
        if directory.path.exists():
            continue
        directory.path.mkdir(parents=True, mode=directory.mode)
        os.chmod(directory.path, directory.mode)  # mkdir's mode is filtered by the umask
        if owner is not None:
            os.chown(directory.path, *owner)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def run_user_problem(user: str, current_uid: int) -> str | None:
    """Why supervisord (started as ``current_uid``) could not run as ``user``, if it could not."""
    try:
        uid = pwd.getpwuid(int(user)).pw_uid if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        return (
            f"SUPERVISOR_RUN_USER={user!r}: no such user on this machine; accepted: an existing "
            "user name or uid (default: the current user)"
        )
    if current_uid not in (0, uid):
        return (
            f"SUPERVISOR_RUN_USER={user!r}: supervisord starts as uid {current_uid} and only "
            "root can switch users; unset it (the current user) or start as root"
        )
    return None


def _read_secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _refuse_secret(path: str) -> str:
    raise OSError(0, "reference renders do not read secret files")


def reference_outputs(env_texts: Mapping[str, str]) -> dict[str, str]:
    """Committed file (relative to the repository) -> expected content, from the
    reference env files' texts (name -> text). Raises ConfigError naming the file."""
    outputs: dict[str, str] = {}
    problems: list[str] = []
    for name, text in sorted(env_texts.items()):
        stem = name.removesuffix(".env")
        try:
            resolved = resolve({}, parse_env_file(text, name), {}, REFERENCE_HOST, _refuse_secret)
            files = render(resolved, str(resolved.values["SUPERVISOR_RUN_DIR"]))
        except ConfigError as error:
            problems.extend(f"deploy/supervisor/{name}: {p}" for p in error.problems)
            continue
        for file in files:
            outputs[f"deploy/supervisor/{stem}.{file.name}"] = file.content
    if problems:
        raise ConfigError(problems)
    outputs[str(DOCS_FILE.relative_to(ROOT))] = settings_markdown()
    return outputs


def drift(expected: Mapping[str, str], committed: Mapping[str, str | None]) -> str:
    """Unified diffs between committed files and fresh renders ('' when none)."""
    diffs: list[str] = []
    for name, content in expected.items():
        old = committed.get(name)
        if old == content:
            continue
        diffs.extend(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"a/{name}" if old is not None else "/dev/null",
                tofile=f"b/{name}",
            )
        )
    return "".join(diffs)


def print_config(resolved: Resolved, output_dir: str, files: Sequence[RenderedFile]) -> str:
    settings = {}
    for setting in SETTINGS:
        value = resolved.values[setting.name]
        if setting.secret and value is not None:
            value = "(set, hidden)"
        settings[setting.name] = {"value": value, "source": resolved.sources[setting.name]}
    plan = stop_plan(resolved.values)
    document = {
        "mode": resolved.mode,
        "output_dir": output_dir,
        "files": [file.name for file in files],
        "settings": settings,
        "stop_budget": {
            "total_seconds": stop_budget(resolved.values),
            "limit_seconds": resolved.values["STOP_GRACE_SECONDS"],
            "order": [
                {
                    "program": s.program,
                    "priority": s.priority,
                    "stopwaitsecs": s.stopwaitsecs,
                    "at_once": s.at_once,
                }
                for s in plan
            ],
        },
        "warnings": list(resolved.warnings),
    }
    return json.dumps(document, indent=2) + "\n"


def write_atomically(
    directory: Path, files: Sequence[tuple[str, str, int]], owner: tuple[int, int] | None = None
) -> None:
    """Write every file to a temporary name first, then rename them all into place.

    Any failure before the renames removes the temporaries and replaces nothing. ``owner``:
    (uid, gid) the files are given to (root rendering for SUPERVISOR_RUN_USER).
    """
    temporaries: list[tuple[str, Path]] = []
    try:
        for name, content, mode in files:
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            temporaries.append((temp, target))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), mode)
                if owner is not None:
                    os.fchown(handle.fileno(), *owner)
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        for temp, _ in temporaries:
            Path(temp).unlink(missing_ok=True)
        raise
    for temp, target in temporaries:
        os.replace(temp, target)


def _file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777 if path.exists() else 0o644


def _run_reference(check: bool, out: TextIO) -> int:
    env_texts = {
        path.name: path.read_text(encoding="utf-8") for path in sorted(REFERENCE_DIR.glob("*.env"))
    }
    expected = reference_outputs(env_texts)
    if check:
        committed = {
            name: (ROOT / name).read_text(encoding="utf-8") if (ROOT / name).exists() else None
            for name in expected
        }
        diff = drift(expected, committed)
        if diff:
            out.write(diff)
            out.write(f"{PROG}: committed renders are stale; run {PROG} --update-reference\n")
            return 1
        out.write(f"{PROG}: {len(expected)} committed renders are up to date\n")
        return 0
    write_atomically(ROOT, [(n, c, _file_mode(ROOT / n)) for n, c in expected.items()])
    out.write(f"{PROG}: wrote {len(expected)} files\n")
    return 0


def _read_env_file(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"--env-file {path}: cannot read it ({error})"]) from error
    return parse_env_file(text, path)


def _resolve(
    args: argparse.Namespace, environ: Mapping[str, str], env_file: Mapping[str, str], err: TextIO
) -> Resolved:
    flags = {"RAGFLOW_MODE": args.mode} if args.mode else {}
    resolved = resolve(environ, env_file, flags, machine_host(), _read_secret)
    user_problem = run_user_problem(str(resolved.values["SUPERVISOR_RUN_USER"]), os.getuid())
    if user_problem:
        raise ConfigError([user_problem])
    warnings = [
        *unknown_variable_warnings(environ),
        *unknown_variable_warnings(env_file, all_prefixes=True),
        *resolved.warnings,
    ]
    for warning in dict.fromkeys(warnings):
        err.write(f"{PROG}: warning: {warning}\n")
    return resolved


def main(
    argv: Sequence[str],
    environ: Mapping[str, str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if args.explain:
            out.write(explain_text() if args.explain == "text" else settings_markdown())
            return 0
        if args.check or args.update_reference:
            return _run_reference(args.check, out)
        env_file = _read_env_file(args.env_file)
        resolved = _resolve(args, environ, env_file, err)
        output_dir = os.path.abspath(args.output_dir or str(resolved.values["SUPERVISOR_RUN_DIR"]))
        files = render(resolved, output_dir)
        if args.print_config:
            out.write(print_config(resolved, output_dir, files))
            return 0
        directories = bundle_directories(resolved, output_dir)
        run_user = str(resolved.values["SUPERVISOR_RUN_USER"])
        owner = None
        if os.getuid() == 0:  # supervisord drops to SUPERVISOR_RUN_USER: prepare for that user
            uid, gid, _ = user_ids(run_user)
            owner = (uid, gid) if uid != 0 else None
            problems = run_user_problems(resolved, directories, run_user)
            if problems:
                raise ConfigError(problems)
        try:
            create_directories(directories, owner)
            write_atomically(Path(output_dir), [(f.name, f.content, f.mode) for f in files], owner)
        except OSError as error:
            raise ConfigError(
                [
                    f"cannot write the configuration ({error}); check --output-dir, "
                    "SUPERVISOR_RUN_DIR, DATA_DIR and LOG_DIR"
                ]
            ) from error
        conf = os.path.join(output_dir, SUPERVISORD_CONF)
        err.write(f"{PROG}: wrote {', '.join(f.name for f in files)} to {output_dir}\n")
        if args.exec:
            argv_ = launcher_argv(str(resolved.values["PYTHON_BIN"]), conf)
            # env-file values reach the programs too (e.g. RAGFLOW_API_KEY, never rendered)
            child_env = {**env_file, **environ}
            os.chdir(str(resolved.values["APP_DIR"]))
            os.execve(argv_[0], argv_, child_env)
        return 0
    except ConfigError as error:
        report_invalid(error, err)
        return 2


def report_invalid(error: ConfigError, err: TextIO) -> None:
    err.write(
        f"{PROG}: error: the configuration is invalid ({len(error.problems)} "
        f"problem{'s' if len(error.problems) != 1 else ''}); nothing was written:\n"
    )
    for problem in error.problems:
        err.write(f"  - {problem}\n")


# Gunicorn started directly has no proxy in front of it (and needs no nginx installed); it is
# the web part of a bundle whatever ROLE says (no executors or socket holders are rendered).
STANDALONE_GUNICORN_FLAGS = {"RAGFLOW_MODE": "production", "PROXY": "none", "ROLE": "all"}


def standalone_gunicorn_conf(environ: Mapping[str, str], err: TextIO = sys.stderr) -> str:
    """gunicorn.conf.py rendered from the environment, for `gunicorn -c gunicorn_config.py`:
    the same settings table, template, warnings and errors as render_config.py (an invalid
    configuration exits 2 and lists every problem)."""
    try:
        resolved = resolve(environ, {}, STANDALONE_GUNICORN_FLAGS, machine_host(), _read_secret)
        for warning in dict.fromkeys([*unknown_variable_warnings(environ), *resolved.warnings]):
            err.write(f"{PROG}: warning: {warning}\n")
        output_dir = str(resolved.values["SUPERVISOR_RUN_DIR"])
        files = render(resolved, output_dir)
    except ConfigError as error:
        report_invalid(error, err)
        raise SystemExit(2) from None
    return next(f.content for f in files if f.name == GUNICORN_CONF)
