"""THE settings table and its parsing, for both ends of the settings contract.

Each environment variable is described once, in SETTINGS. That tuple drives the renderer's
parsing (``resolve``), ``--explain``, docs/settings.md, ``--print-config`` and the template
context, and the application's (``resolve_app``): a value the renderer accepts and passes to
the programs is parsed again there by the same parser, with the same errors. Nothing here reads
the environment or the file system: the caller passes the environment, the env-file values, the
flags, the machine facts (``Host``) and a reader for ``*_FILE`` secrets. Standard library only:
the renderer and the application both import it, and it imports neither.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from shared import database_url
from shared.ports import HTTP_PORT_FILE, METRICS_PORT_FILE

Value = str | int | bool | None
MODES = ("production", "dev")
ALL_MODES = frozenset(MODES)
PRODUCTION = frozenset({"production"})
DEV = frozenset({"dev"})
# ROLE: which programs a production bundle runs (see renderer.render.has_web/has_executors).
ROLES = ("all", "web", "executor")
ALL_ROLES = frozenset(ROLES)
WEB_ROLES = frozenset({"all", "web"})
EXECUTOR_ROLES = frozenset({"all", "executor"})

# Unknown variables with these prefixes are probably typos of ours.
OWN_PREFIXES = (
    "GUNICORN_",
    "RAGFLOW_",
    "SUPERVISOR_",
    "LOG_",
    "PROXY_",
    "NGINX_",
    "METRICS_",
    "EXECUTOR_",
)
# Names supervisord and gunicorn set or read themselves.
FOREIGN_NAMES = frozenset(
    {
        "SUPERVISOR_ENABLED",
        "SUPERVISOR_PROCESS_NAME",
        "SUPERVISOR_GROUP_NAME",
        "SUPERVISOR_SERVER_URL",
        "SUPERVISOR_SERVER_USERNAME",
        "SUPERVISOR_SERVER_PASSWORD",
    }
)


class ConfigError(Exception):
    """Every problem found in the configuration, one line each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class NoDefault(Exception):
    """A computed default that needs a machine fact the caller did not supply."""


@dataclass(frozen=True)
class Host:
    """Facts about the machine, used only by computed defaults.

    None means "unknown here": reference renders pass None so that any setting
    depending on the machine must be pinned in the reference env file.
    """

    cpu_count: Callable[[], int] | None
    python: str | None
    app_dir: str | None
    user: str | None
    nginx: str | None = None  # the nginx binary found on PATH


def default_workers(cpus: int) -> int:
    """Gunicorn's recommended worker count for ``cpus`` CPUs: 2 x CPUs + 1."""
    return 2 * cpus + 1


@dataclass(frozen=True)
class Parser:
    """Turns the raw text into a value; raises ValueError. ``accepts`` is for humans."""

    parse: Callable[[str], Value]
    accepts: str


Default = Value | Callable[[Mapping[str, Value], Host], Value]


@dataclass(frozen=True)
class Setting:
    name: str
    parser: Parser
    default: Default
    help: str
    default_doc: str = ""  # how a computed default is described
    modes: frozenset[str] = ALL_MODES
    roles: frozenset[str] = ALL_ROLES  # the ROLEs whose programs use it (production)
    app_env: bool = False  # the application reads it (rendered into environment= unless secret)
    secret: bool = False  # never rendered, never printed
    file_variant: bool = False  # NAME_FILE names a file holding the value

    def default_text(self) -> str:
        if self.default_doc:
            return self.default_doc
        if callable(self.default):
            raise TypeError(f"{self.name}: a computed default needs default_doc")
        return "(unset)" if self.default is None else format_value(self.default)


# --- parsers -------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# An IPv6 zone (scope id): an interface name as Linux allows it (at most 15 characters) or an
# interface number. ipaddress accepts any text after '%', including spaces and ';'.
_SCOPE_ID = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_UNIX_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HTTP_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_BYTE_UNITS = {"": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def format_value(value: Value) -> str:
    """How a value is written back as an environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def integer(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[0-9]{1,12}", raw.strip()):
            raise ValueError
        number = int(raw)
        if not low <= number <= high:
            raise ValueError
        return number

    return Parser(parse, f"an integer from {low} to {high}")


def optional(inner: Parser) -> Parser:
    def parse(raw: str) -> Value:
        return None if raw.strip() == "" else inner.parse(raw)

    return Parser(parse, f"empty (unset) or {inner.accepts}")


def choice(*options: str, aliases: Mapping[str, str] | None = None) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        value = (aliases or {}).get(value, value)
        if value not in options:
            raise ValueError
        return value

    shown = " | ".join(options)
    if aliases:
        shown += " (also " + ", ".join(f"{a} = {o}" for a, o in aliases.items()) + ")"
    return Parser(parse, shown)


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


BOOLEAN = Parser(_boolean, "true | false (also 1/0, yes/no, on/off)")


MAX_BYTES = 10**15 - 1  # 15 digits: a value rendered as a byte count parses again


def _byte_size(raw: str) -> int:
    match = re.fullmatch(r"([0-9]{1,15})\s*([KMG]B)?", raw.strip().upper())
    if match is None:
        raise ValueError
    number = int(match.group(1)) * _BYTE_UNITS[match.group(2) or ""]
    if not 1 <= number <= MAX_BYTES:
        raise ValueError
    return number


BYTE_SIZE = Parser(
    _byte_size,
    f"a positive byte count up to {MAX_BYTES}, optionally with KB, MB or GB (1024-based)",
)


def byte_size(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        number = _byte_size(raw)
        if not low <= number <= high:
            raise ValueError
        return number

    return Parser(parse, f"a byte count from {low} to {high}, optionally with KB, MB or GB")


def _path(raw: str) -> str:
    if not raw.startswith("/") or _CONTROL.search(raw) or re.search(r"[\s'\"]", raw):
        raise ValueError
    return raw.rstrip("/") or "/"


PATH = Parser(_path, "an absolute path without whitespace, quotes or control characters")


def _ip_address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(raw)
    scope = getattr(address, "scope_id", None)
    if scope is not None and not _SCOPE_ID.fullmatch(scope):
        raise ValueError(f"scope id {scope!r}")
    return address


def _host(raw: str) -> str:
    try:
        return str(_ip_address(raw))
    except ValueError:
        if not _HOSTNAME.fullmatch(raw):
            raise
        return raw.lower()


HOST = Parser(
    _host,
    "an IPv4/IPv6 address (an IPv6 scope id is an interface name or number of at most 15 of "
    "A-Z a-z 0-9 _ . -, as in fe80::1%eth0) or a host name",
)


def _port(raw: str) -> int:
    return int(integer(1, 65535).parse(raw) or 0)


# A listener the bundle binds itself may take 0: the kernel picks a free port, and the program
# that binds it writes the port to a file in SUPERVISOR_RUN_DIR (shared/ports.py).
LISTEN_PORT = Parser(
    integer(0, 65535).parse, "a port from 1 to 65535, or 0 (the kernel picks a free port)"
)


def _host_port(raw: str, port_parser: Callable[[str], Value] = _port) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep:
        raise ValueError
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    address, number = _host(host), port_parser(port)
    return f"[{address}]:{number}" if ":" in address else f"{address}:{number}"


def _inet_server(raw: str) -> str:
    value = _host_port(raw)
    if value.startswith("["):
        raise ValueError  # supervisord's TCP server is IPv4 only
    return value


INET_SERVER = Parser(_inet_server, "host:port with an IPv4 address or host name")


def _debugpy_listen(raw: str) -> str | None:
    value = raw.strip()
    if value in ("", "0"):
        return None
    if re.fullmatch(r"[0-9]+", value):
        return str(_port(value))
    return _host_port(value, LISTEN_PORT.parse)  # host:0: debugpy binds a free port


DEBUGPY_LISTEN = Parser(
    _debugpy_listen,
    "port or host:port (host:0: a free port, logged once bound); empty or 0 turns debugpy off",
)


def _ip_list(raw: str) -> str:
    value = raw.strip()
    if value == "*":
        return value
    items = [item.strip() for item in value.split(",")]
    if not items or not all(items):
        raise ValueError
    return ",".join(
        str(ipaddress.ip_network(item, strict=False))
        if "/" in item and "%" not in item
        else str(_ip_address(item))
        for item in items
    )


IP_LIST = Parser(_ip_list, "* or a comma-separated list of IP addresses/networks")


GRACEFUL_TIMEOUT_FLAG = "--graceful-timeout"
GRACEFUL_TIMEOUT_RANGE = (1, 3600)


def graceful_timeout_in(args: str | None) -> int | None:
    """The --graceful-timeout Gunicorn command-line options give (the last one wins, as in
    Gunicorn's parser); None without one. Raises ValueError for an unusable value."""
    found = None
    words = shlex.split(args or "")
    for index, word in enumerate(words):
        if word == GRACEFUL_TIMEOUT_FLAG:
            found = words[index + 1] if index + 1 < len(words) else ""
        elif word.startswith(GRACEFUL_TIMEOUT_FLAG + "="):
            found = word.partition("=")[2]
    if found is None:
        return None
    return int(integer(*GRACEFUL_TIMEOUT_RANGE).parse(found))  # type: ignore[arg-type]


def _gunicorn_args(raw: str) -> str | None:
    graceful_timeout_in(raw)  # shell words, and a usable --graceful-timeout
    return raw.strip() or None


def _regex(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not pattern.fullmatch(raw):
            raise ValueError
        return raw

    return parse


UNIX_USER = Parser(_regex(_UNIX_USER), "a user name or numeric uid")
NAME = Parser(_regex(_NAME), "1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
HTTP_USER = Parser(_regex(_HTTP_USER), "1-64 of A-Z a-z 0-9 _ . @ -")


def _password(raw: str) -> str:
    if not re.fullmatch(r"[\x21-\x7e]{1,128}", raw):
        raise ValueError
    return raw


PASSWORD = Parser(_password, "1-128 printable ASCII characters without spaces")


# The rule for RAGFLOW_API_KEY, applied by the renderer and by the application alike.
_API_KEY = re.compile(r"[\x21-\x7e]{16,1024}")


def _api_key(raw: str) -> str | None:
    if raw == "":
        return None
    if not _API_KEY.fullmatch(raw):
        raise ValueError
    return raw


API_KEY = Parser(
    _api_key,
    "empty (unset) or 16 to 1024 printable ASCII characters without whitespace "
    "(clients send it in an HTTP header)",
)


# DATABASE_URL: the rule lives in shared/database_url.py, which the application opens its
# storage backend with.
def _database_url(raw: str) -> str | None:
    database_url.parse(raw)
    return raw.strip() or None


DATABASE_URL = Parser(_database_url, database_url.ACCEPTS)


# --- computed defaults -----------------------------------------------------------


def _need(fact: str | None, what: str) -> str:
    if fact is None:
        raise NoDefault(f"depends on the machine ({what}); set it explicitly")
    return fact


def _host_ip(values: Mapping[str, Value], host: Host) -> str:
    return "127.0.0.1" if values["RAGFLOW_MODE"] == "dev" else "0.0.0.0"


def _graceful_timeout(values: Mapping[str, Value], host: Host) -> int:
    given = graceful_timeout_in(_optional_str(values["GUNICORN_CMD_ARGS"]))
    return 20 if given is None else given


def _optional_str(value: Value) -> str | None:
    return None if value is None else str(value)


def _workers(values: Mapping[str, Value], host: Host) -> int:
    if values["WEB_CONCURRENCY"] is not None:
        return int(values["WEB_CONCURRENCY"])
    if host.cpu_count is None:
        raise NoDefault("depends on the machine (CPU count); set it explicitly")
    return default_workers(host.cpu_count())


def _python(values: Mapping[str, Value], host: Host) -> str:
    return _need(host.python, "the running interpreter")


def _app_dir(values: Mapping[str, Value], host: Host) -> str:
    return _need(host.app_dir, "the bundle's location")


def _under_app(name: str) -> Callable[[Mapping[str, Value], Host], str]:
    return lambda values, host: f"{values['APP_DIR']}/{name}"


def _run_user(values: Mapping[str, Value], host: Host) -> str:
    return _need(host.user, "the current user")


def _nginx_bin(values: Mapping[str, Value], host: Host) -> str | None:
    if values["PROXY"] != "nginx":
        return None
    return _need(host.nginx, "nginx was not found on PATH; install nginx or set PROXY=none")


# --- the table -------------------------------------------------------------------

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RAGFLOW_MODE",
        choice(*MODES, aliases={"development": "dev"}),
        "production",
        "production (Gunicorn, socket holder, task executors) or dev (Werkzeug reloader + "
        "debugger); --production-mode/--dev-mode win",
        app_env=True,
    ),
    Setting(
        "ROLE",
        choice(*ROLES),
        "all",
        "which programs this bundle runs (production): all; web (socket holders, proxy, web; "
        "no task executors); executor (only the WS task executors, no HTTP port). web and "
        "executor share one PostgreSQL database (DATABASE_URL) with other bundles",
    ),
    Setting(
        "APP_DIR",
        PATH,
        _app_dir,
        "application root: programs' working directory",
        default_doc="the folder holding render_config.py",
    ),
    Setting(
        "PYTHON_BIN",
        PATH,
        _python,
        "Python interpreter used for every program",
        default_doc="the interpreter running render_config.py",
    ),
    Setting(
        "HOST_IP",
        HOST,
        _host_ip,
        "address the HTTP server listens on",
        default_doc="0.0.0.0 (production), 127.0.0.1 (dev)",
        app_env=True,
    ),
    Setting(
        "HOST_PORT",
        LISTEN_PORT,
        9380,
        "TCP port the HTTP server listens on; 0: a free port the kernel picks, written to "
        f"SUPERVISOR_RUN_DIR/{HTTP_PORT_FILE} once bound",
        app_env=True,
    ),
    Setting(
        "WEB_CONCURRENCY",
        optional(integer(1, 1024)),
        None,
        "worker count used when GUNICORN_WORKERS is unset",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_WORKERS",
        integer(1, 1024),
        _workers,
        "Gunicorn worker processes",
        default_doc="WEB_CONCURRENCY, else 2 x CPUs + 1 (CPUs: affinity capped by the "
        "cgroup quota)",
        modes=PRODUCTION,
        roles=WEB_ROLES,
    ),
    Setting(
        "GUNICORN_WORKER_CLASS",
        choice("sync", "gthread"),
        "sync",
        "Gunicorn worker class",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_THREADS",
        integer(1, 256),
        1,
        "threads per worker (more than 1 needs GUNICORN_WORKER_CLASS=gthread)",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_TIMEOUT",
        integer(1, 86400),
        300,
        "seconds a worker may spend on one request before it is killed",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_CMD_ARGS",
        Parser(
            _gunicorn_args,
            "Gunicorn command-line options as shell words (--graceful-timeout, if given, an "
            f"integer from {GRACEFUL_TIMEOUT_RANGE[0]} to {GRACEFUL_TIMEOUT_RANGE[1]})",
        ),
        None,
        "extra Gunicorn options; Gunicorn reads them itself, after gunicorn.conf.py, so they win "
        "over the rendered file (a --graceful-timeout here counts in the shutdown budget)",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_GRACEFUL_TIMEOUT",
        integer(*GRACEFUL_TIMEOUT_RANGE),
        _graceful_timeout,
        "seconds workers get to finish requests on stop/restart",
        default_doc="--graceful-timeout in GUNICORN_CMD_ARGS, else 20",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_KEEPALIVE",
        integer(0, 3600),
        5,
        "seconds to wait for the next request on a keep-alive connection (gthread)",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_MAX_REQUESTS",
        integer(0, 10_000_000),
        1000,
        "requests a worker serves before it is replaced (0 = never)",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_MAX_REQUESTS_JITTER",
        integer(0, 10_000_000),
        50,
        "random extra requests added to GUNICORN_MAX_REQUESTS per worker",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_PRELOAD",
        BOOLEAN,
        True,
        "load the application in the master before forking workers",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_LOG_LEVEL",
        choice("debug", "info", "warning", "error", "critical"),
        "info",
        "Gunicorn error-log level",
        modes=PRODUCTION,
    ),
    Setting(
        "FORWARDED_ALLOW_IPS",
        IP_LIST,
        "127.0.0.1",
        "with PROXY=none: proxies trusted to set X-Forwarded-Proto (behind the bundled nginx "
        "Gunicorn trusts only its unix socket)",
        modes=PRODUCTION,
    ),
    Setting(
        "PROXY",
        choice("nginx", "none"),
        "nginx",
        "nginx: a buffering reverse proxy listens on HOST_IP:HOST_PORT and Gunicorn on a unix "
        "socket; none: Gunicorn listens on HOST_IP:HOST_PORT itself (only behind another "
        "buffering proxy: slow clients tie up sync workers)",
        modes=PRODUCTION,
        roles=WEB_ROLES,
    ),
    Setting(
        "NGINX_BIN",
        PATH,
        _nginx_bin,
        "nginx executable (PROXY=nginx)",
        default_doc="nginx found on PATH",
        modes=PRODUCTION,
        roles=WEB_ROLES,
    ),
    Setting(
        "PROXY_WORKERS",
        integer(1, 64),
        1,
        "nginx worker processes (each serves thousands of connections)",
        modes=PRODUCTION,
    ),
    Setting(
        "PROXY_WORKER_CONNECTIONS",
        integer(64, 65536),
        4096,
        "connections per nginx worker, clients and Gunicorn together",
        modes=PRODUCTION,
    ),
    Setting(
        "PROXY_CLIENT_HEADER_TIMEOUT",
        integer(1, 3600),
        10,
        "seconds a client gets to send the request line and headers",
        modes=PRODUCTION,
    ),
    Setting(
        "PROXY_CLIENT_TIMEOUT",
        integer(1, 3600),
        30,
        "seconds a client may stay silent while sending a body or reading a response",
        modes=PRODUCTION,
    ),
    Setting(
        "PROXY_KEEPALIVE_TIMEOUT",
        integer(0, 3600),
        15,
        "seconds an idle keep-alive client connection stays open (0 = no keep-alive)",
        modes=PRODUCTION,
    ),
    Setting(
        "GUNICORN_WORKER_MAX_MEMORY",
        optional(byte_size(16 * 1024**2, 1 << 40)),
        None,
        "private memory (resident less the page cache it maps) above which a Gunicorn worker is "
        "retired after its current request (unset = no limit)",
        modes=PRODUCTION,
        app_env=True,
    ),
    Setting(
        "METRICS_PORT",
        optional(LISTEN_PORT),
        None,
        "TCP port of the Prometheus metrics endpoint (program `metrics`, no API key); "
        "unset = no metrics; 0: a free port the kernel picks, written to "
        f"SUPERVISOR_RUN_DIR/{METRICS_PORT_FILE} once bound",
        modes=PRODUCTION,
    ),
    Setting(
        "METRICS_HOST",
        HOST,
        "127.0.0.1",
        "address the metrics endpoint listens on (METRICS_PORT)",
        modes=PRODUCTION,
    ),
    Setting(
        "WS",
        integer(0, 64),
        1,
        "task-executor programs (0 = web only)",
        modes=PRODUCTION,
        roles=EXECUTOR_ROLES,
    ),
    Setting(
        "EXECUTOR_MAX_MEMORY",
        optional(byte_size(16 * 1024**2, 1 << 40)),
        None,
        "private memory (resident less the page cache it maps) above which a task executor hands "
        "back its task and restarts (unset = no limit)",
        modes=PRODUCTION,
        app_env=True,
    ),
    Setting(
        "TASK_STOP_TIMEOUT",
        integer(1, 3600),
        5,
        "seconds an executor gets to hand back its task on stop",
        app_env=True,
    ),
    Setting(
        "TASK_LEASE_SECONDS",
        integer(2, 86400),
        60,
        "seconds a claimed task stays leased without a renewal",
        app_env=True,
    ),
    Setting(
        "TASK_MAX_ATTEMPTS",
        integer(1, 100),
        3,
        "attempts before a parse task is marked failed",
        app_env=True,
    ),
    Setting(
        "TASK_POLL_INTERVAL_MS",
        integer(10, 5000),
        500,
        "how often an idle executor checks the queue (milliseconds)",
        app_env=True,
    ),
    Setting(
        "TASK_HEARTBEAT_SECONDS",
        integer(1, 300),
        5,
        "seconds between executor heartbeats (stale after 3 missed)",
        app_env=True,
    ),
    Setting(
        "EXECUTOR_HOST_ID",
        optional(NAME),
        None,
        "first part of the task executors' consumer names (<id>_<N>)",
        default_doc="the host name",
        app_env=True,
    ),
    Setting(
        "PARSE_MAX_BYTES",
        integer(1, 1 << 40),
        64 * 1024**2,
        "largest file the executors parse (bytes); bigger documents end FAIL",
        app_env=True,
    ),
    Setting(
        "PARSE_MAX_UNCOMPRESSED_BYTES",
        integer(1, 1 << 40),
        64 * 1024**2,
        "largest uncompressed size of a DOCX, XLSX or PPTX archive (bytes); guards against"
        " zip bombs",
        app_env=True,
    ),
    Setting(
        "PARSE_MAX_PAGES",
        integer(1, 1_000_000),
        5000,
        "most PDF pages or PPTX slides parsed; longer files end FAIL",
        app_env=True,
    ),
    Setting(
        "PARSE_MAX_CHUNKS",
        integer(1, 10_000_000),
        100_000,
        "most chunks one document may produce; more ends FAIL",
        app_env=True,
    ),
    Setting(
        "PARSE_TIMEOUT",
        integer(1, 86_400),
        600,
        "seconds one document may take to parse; then FAIL",
        app_env=True,
    ),
    Setting(
        "MAX_CONTENT_LENGTH",
        byte_size(1024, 1 << 40),
        1024**3,
        "largest accepted request body (uploads)",
        default_doc="1GB",
        app_env=True,
    ),
    Setting(
        "MIN_FREE_DISK",
        BYTE_SIZE,
        256 * 1024**2,
        "/v1/system/healthz fails (HTTP 503) when the file system holding DATA_DIR has less "
        "free space than this",
        default_doc="256MB",
        app_env=True,
    ),
    Setting(
        "RAGFLOW_DEBUGPY_LISTEN",
        DEBUGPY_LISTEN,
        None,
        "debugpy listen address in dev mode",
        modes=DEV,
        app_env=True,
    ),
    Setting(
        "DATA_DIR",
        PATH,
        _under_app("data"),
        "database and uploaded files",
        default_doc="APP_DIR/data",
        app_env=True,
    ),
    Setting(
        "LOG_TARGET",
        choice("stdout", "file"),
        "stdout",
        "stdout: every program logs to the container's stdout/stderr; "
        "file: rotated files in LOG_DIR",
    ),
    Setting(
        "LOG_DIR",
        PATH,
        _under_app("logs"),
        "log directory when LOG_TARGET=file",
        default_doc="APP_DIR/logs",
    ),
    Setting(
        "LOG_MAX_BYTES",
        BYTE_SIZE,
        50 * 1024**2,
        "size at which a log file is rotated (LOG_TARGET=file)",
        default_doc="50MB",
    ),
    Setting("LOG_BACKUPS", integer(0, 1000), 5, "rotated log files kept (LOG_TARGET=file)"),
    Setting(
        "LOG_FORMAT",
        choice("text", "json"),
        "text",
        "text lines, or one JSON object per line",
        app_env=True,
    ),
    Setting(
        "SUPERVISOR_RUN_DIR",
        PATH,
        _under_app("run"),
        "supervisord socket, pid file, listen socket, port files and default --output-dir",
        default_doc="APP_DIR/run",
        app_env=True,
    ),
    Setting(
        "SUPERVISOR_RUN_USER",
        UNIX_USER,
        _run_user,
        "user supervisord and every program run as ([supervisord] user=); started as root, "
        "the directories are created for this user",
        default_doc="the current user",
    ),
    Setting(
        "SUPERVISOR_USER",
        optional(HTTP_USER),
        None,
        "supervisorctl/XML-RPC user name (needs SUPERVISOR_PASSWORD)",
        file_variant=True,
    ),
    Setting(
        "SUPERVISOR_PASSWORD",
        optional(PASSWORD),
        None,
        "supervisorctl/XML-RPC password (needs SUPERVISOR_USER); "
        "written only to the 0600 supervisord.conf",
        secret=True,
        file_variant=True,
    ),
    Setting(
        "SUPERVISOR_INET_HTTP_SERVER",
        optional(INET_SERVER),
        None,
        "host:port for supervisord's TCP XML-RPC server (off when unset; needs credentials)",
    ),
    Setting(
        "STOP_GRACE_SECONDS",
        integer(1, 86400),
        30,
        "the orchestrator's stop grace period; the worst-case shutdown must fit in it",
    ),
    Setting(
        "DATABASE_URL",
        DATABASE_URL,
        None,
        "the storage backend and its location; passed through the environment, never rendered",
        default_doc="SQLite at DATA_DIR/ragflow.db",
        app_env=True,
        secret=True,
        file_variant=True,
    ),
    Setting(
        "DB_POOL_SIZE",
        integer(1, 100),
        4,
        "PostgreSQL: connections each web worker or executor process keeps at most",
        app_env=True,
    ),
    Setting(
        "DB_CONNECT_TIMEOUT",
        integer(1, 300),
        5,
        "PostgreSQL: seconds to get a connection before a request fails with 503",
        app_env=True,
    ),
    Setting(
        "DB_STATEMENT_TIMEOUT_MS",
        integer(100, 3_600_000),
        30_000,
        "PostgreSQL: milliseconds one statement may run before the server cancels it",
        app_env=True,
    ),
    Setting(
        "DB_LOCK_TIMEOUT_MS",
        integer(100, 3_600_000),
        10_000,
        "PostgreSQL: milliseconds a statement waits for a lock another session holds before it"
        " fails with 503 (at most DB_STATEMENT_TIMEOUT_MS)",
        app_env=True,
    ),
    Setting(
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        integer(1000, 86_400_000),
        15_000,
        "PostgreSQL: milliseconds a session may sit idle inside a transaction (a frozen process)"
        " before the server ends it and releases its locks",
        app_env=True,
    ),
    Setting(
        "RAGFLOW_API_KEY",
        API_KEY,
        None,
        "API key the app accepts; passed through the environment, never rendered",
        app_env=True,
        secret=True,
        file_variant=True,
    ),
)

BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}


def known_names() -> frozenset[str]:
    names = set(BY_NAME)
    names.update(f"{s.name}_FILE" for s in SETTINGS if s.file_variant)
    return frozenset(names)


# --- resolution ------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    values: Mapping[str, Value]
    sources: Mapping[str, str]  # default | env | env-file | flag
    warnings: tuple[str, ...] = field(default=())

    @property
    def mode(self) -> str:
        return str(self.values["RAGFLOW_MODE"])


def parse_env_file(text: str, label: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (values literal, as ``docker --env-file``), ``#`` comments."""
    values: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            problems.append(f"{label}:{number}: expected KEY=VALUE, got {line!r}")
            continue
        values[key.strip()] = value
    if problems:
        raise ConfigError(problems)
    return values


def _describe(raw: str) -> str:
    return repr(raw) if len(raw) <= 80 else repr(raw[:77]) + "..."


Layers = list[tuple[str, Mapping[str, str]]]


def _lookup(name: str, layers: Layers) -> tuple[str, str] | None:
    for source, mapping in layers:
        if name in mapping:
            return source, mapping[name]
    return None


def _read_layers(
    layers: Layers,
    host: Host,
    read_secret: Callable[[str], str],
    wanted: Callable[[Setting, Mapping[str, Value]], bool],
) -> tuple[dict[str, Value], dict[str, str], list[str]]:
    """Values, their sources and every problem, walking SETTINGS in order (a computed default
    sees the settings before it). A setting ``wanted`` refuses takes its default, or None when
    that default cannot be computed here, and is never read from the layers."""
    values: dict[str, Value] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        if not wanted(setting, values):
            try:
                default = setting.default
                values[setting.name] = default(values, host) if callable(default) else default
            except (NoDefault, KeyError):
                values[setting.name] = None
            sources[setting.name] = "default"
            continue
        found = _lookup(setting.name, layers)
        from_file = _lookup(f"{setting.name}_FILE", layers) if setting.file_variant else None
        if found is not None and from_file is not None:
            problems.append(
                f"{setting.name} and {setting.name}_FILE are both set; set only one of them"
            )
            continue
        if from_file is not None:
            source, path = from_file
            try:
                raw = read_secret(path).rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as error:
                reason = (
                    (error.strerror or str(error)) if isinstance(error, OSError) else "not UTF-8"
                )
                problems.append(
                    f"{setting.name}_FILE={_describe(path)}: cannot read the file "
                    f"({reason}); accepted: a readable file holding the value"
                )
                continue
            found = (source, raw)
            label = f"{setting.name}_FILE={_describe(path)} (the file's contents)"
        elif found is not None:
            shown = "(value hidden)" if setting.secret else _describe(found[1])
            label = f"{setting.name}={shown}"
        if found is None:
            try:
                default = setting.default
                values[setting.name] = default(values, host) if callable(default) else default
            except NoDefault as error:
                if values.get("RAGFLOW_MODE") in setting.modes and _in_role(setting, values):
                    problems.append(f"{setting.name}: no value: {error}")
                values[setting.name] = None  # not used in this mode
            except KeyError:
                problems.append(f"{setting.name}: no default because a setting it uses is invalid")
            sources[setting.name] = "default"
            continue
        source, raw = found
        if _CONTROL.search(raw):
            problems.append(
                f"{label}: contains control characters (newline, tab, NUL, ...); "
                f"accepted: {setting.parser.accepts}"
            )
            continue
        try:
            values[setting.name] = setting.parser.parse(raw)
        except ValueError:
            problems.append(f"{label}: invalid; accepted: {setting.parser.accepts}")
            continue
        sources[setting.name] = source
    return values, sources, problems


def resolve(
    environ: Mapping[str, str],
    env_file: Mapping[str, str],
    flags: Mapping[str, str],
    host: Host,
    read_secret: Callable[[str], str],
) -> Resolved:
    """The renderer's end: parse and validate every setting; raise ConfigError listing every
    problem.

    Precedence: flag > environment > env file > default.
    """
    layers = [("flag", flags), ("env", environ), ("env-file", env_file)]
    values, sources, problems = _read_layers(layers, host, read_secret, lambda s, v: True)
    if problems:
        raise ConfigError(problems)
    problems.extend(_cross_check(values))
    if problems:
        raise ConfigError(problems)
    warnings = _mode_warnings(values, sources) + _role_warnings(values, sources)
    return Resolved(values, sources, tuple(warnings))


def _app_reads(setting: Setting, values: Mapping[str, Value]) -> bool:
    mode = values.get("RAGFLOW_MODE")  # None while RAGFLOW_MODE itself is read (it comes first)
    return setting.app_env and (mode is None or mode in setting.modes)


def resolve_app(
    environ: Mapping[str, str],
    host: Host,
    read_secret: Callable[[str], str],
    fallback: Mapping[str, str] | None = None,
) -> Mapping[str, Value]:
    """The application's end: every setting the application reads (``app_env``) in the current
    mode, parsed by the same definitions as ``resolve``; raise ConfigError listing every
    problem. Other settings hold their defaults (None where the default needs a machine fact
    ``host`` lacks). ``fallback`` sits between the environment and the defaults (the dev
    server's ``RAGFLOW_MODE=dev``)."""
    layers = [("env", environ), ("fallback", fallback or {})]
    values, _, problems = _read_layers(layers, host, read_secret, _app_reads)
    if problems:
        raise ConfigError(problems)
    return values


def split_host_port(value: str) -> tuple[str, int]:
    """A value of DEBUGPY_LISTEN (``port``: on 127.0.0.1) or ``host:port`` as (host, port)."""
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "127.0.0.1", int(port)


def _cross_check(values: Mapping[str, Value]) -> list[str]:
    problems = []
    if (values["SUPERVISOR_USER"] is None) != (values["SUPERVISOR_PASSWORD"] is None):
        problems.append(
            "SUPERVISOR_USER and SUPERVISOR_PASSWORD: set both (supervisorctl/XML-RPC "
            "authentication) or neither"
        )
    if values["SUPERVISOR_INET_HTTP_SERVER"] is not None and values["SUPERVISOR_USER"] is None:
        problems.append(
            f"SUPERVISOR_INET_HTTP_SERVER={values['SUPERVISOR_INET_HTTP_SERVER']!r}: a TCP "
            "XML-RPC server needs SUPERVISOR_USER and SUPERVISOR_PASSWORD (or *_FILE); set "
            "them or unset SUPERVISOR_INET_HTTP_SERVER"
        )
    metrics_port = values["METRICS_PORT"]
    serves_http = values["ROLE"] in WEB_ROLES  # ROLE=executor listens on no HOST_PORT
    if metrics_port and serves_http and metrics_port == values["HOST_PORT"]:
        problems.append(
            f"METRICS_PORT={metrics_port}: the HTTP server already listens on this port "
            "(HOST_PORT); choose another port for the metrics endpoint"
        )
    graceful = values["GUNICORN_GRACEFUL_TIMEOUT"]
    given = graceful_timeout_in(_optional_str(values["GUNICORN_CMD_ARGS"]))
    if given is not None and given != graceful:
        problems.append(
            f"GUNICORN_GRACEFUL_TIMEOUT={graceful} and GUNICORN_CMD_ARGS' {GRACEFUL_TIMEOUT_FLAG} "
            f"{given} disagree (Gunicorn would use {given}); set only one of them"
        )
    threads = values["GUNICORN_THREADS"]
    if isinstance(threads, int) and threads > 1 and values["GUNICORN_WORKER_CLASS"] != "gthread":
        problems.append(
            f"GUNICORN_THREADS={threads}: threads need GUNICORN_WORKER_CLASS=gthread; "
            "set it or use GUNICORN_THREADS=1"
        )
    return problems + _role_problems(values)


def _role_problems(values: Mapping[str, Value]) -> list[str]:
    """ROLE combinations that make no sense (each a separate problem, all reported at once)."""
    role = values["ROLE"]
    if role == "all":
        return []
    problems = []
    if values["RAGFLOW_MODE"] == "dev":
        problems.append(
            f"ROLE={role} with dev mode: the dev server is one process serving the API and "
            "parsing in-process; use ROLE=all with --dev-mode, or production mode"
        )
    raw_url = values["DATABASE_URL"]
    if database_url.parse(str(raw_url or "")).scheme == "sqlite":
        shown = "unset (SQLite at DATA_DIR/ragflow.db)" if raw_url is None else "a SQLite URL"
        problems.append(
            f"ROLE={role} with DATABASE_URL {shown}: a split role shares one database with "
            "other bundles, and a SQLite file belongs to one machine; set DATABASE_URL (or "
            "DATABASE_URL_FILE) to postgresql://user:password@host:port/database, or use ROLE=all"
        )
    if role == "executor" and values["WS"] == 0:
        problems.append(
            "ROLE=executor with WS=0: an executor bundle runs only the WS task executors, so it "
            "would run nothing; set WS to 1 or more, or use ROLE=web"
        )
    return problems


def _in_role(setting: Setting, values: Mapping[str, Value]) -> bool:
    """Whether this bundle's ROLE runs a program that uses ``setting`` (True while unknown)."""
    role = values.get("ROLE")
    return role is None or role in setting.roles


def role_names(roles: frozenset[str]) -> str:
    """``roles`` in the table's order, for messages and docs: "all or web"."""
    return " or ".join(role for role in ROLES if role in roles)


def _role_warnings(values: Mapping[str, Value], sources: Mapping[str, str]) -> list[str]:
    role = values["ROLE"]
    return [
        f"{s.name} is set but applies only with ROLE={role_names(s.roles)}; ignored with "
        f"ROLE={role}"
        for s in SETTINGS
        if sources.get(s.name) != "default"
        and values["RAGFLOW_MODE"] in s.modes
        and not _in_role(s, values)
    ]


def _mode_warnings(values: Mapping[str, Value], sources: Mapping[str, str]) -> list[str]:
    mode = str(values["RAGFLOW_MODE"])
    return [
        f"{s.name} is set but applies only in {'/'.join(sorted(s.modes))} mode; "
        f"ignored in {mode} mode"
        for s in SETTINGS
        if sources.get(s.name) != "default" and mode not in s.modes
    ]


def unknown_variable_warnings(names: Iterable[str], all_prefixes: bool = False) -> list[str]:
    """Warnings for names that look like ours but are not (with a did-you-mean).

    ``all_prefixes``: every name is expected to be ours (an env file).
    """
    known = known_names()
    warnings = []
    for name in sorted(set(names)):
        if name in known or name in FOREIGN_NAMES:
            continue
        if not all_prefixes and not name.startswith(OWN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown setting {name} is ignored{hint}")
    return warnings
