"""A small hand-written supervisord.conf exercising supervise/ on its own (no renderer).

Same program layout as the production render (socket_holder -> web via serve_web + Gunicorn with our
hooks, task_executor numprocs), but serving tests/support/wsgi_app.py and running a stand-in
executor, with short timeouts so the tests stay fast.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from support.ports import HTTP_PORT_FILE
from support.supervised import APP_DIR, PYTHON, TESTS_DIR


@dataclass(frozen=True)
class PlumbingSpec:
    port: int = 0  # 0: the holders bind a free port and write it to run_dir/http.port
    workers: int = 2
    graceful_timeout: int = 5
    executors: int = 2
    executor_finish_seconds: float = 0.0
    executor_crash: bool = False
    web_app: str = "support.wsgi_app:application"
    extra: str = ""


LOG_LINES = (
    "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
    "stderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0\n"
)


def write_plumbing_conf(spec: PlumbingSpec, run_dir: Path) -> Path:
    """Write supervisord.conf + gunicorn.conf.py into run_dir; return the supervisord.conf path."""
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    gunicorn_conf = run_dir / "gunicorn.conf.py"
    gunicorn_conf.write_text(
        f"bind = ['127.0.0.1:{spec.port}']\n"
        f"workers = {spec.workers}\n"
        "worker_class = 'sync'\n"
        "timeout = 300\n"
        f"graceful_timeout = {spec.graceful_timeout}\n"
        "preload_app = True\n"
        f"pythonpath = {str(TESTS_DIR)!r}\n"
        "control_socket_disable = True\n"
        "accesslog = '-'\n"
        "errorlog = '-'\n"
        "from supervise.gunicorn_hooks import post_fork  # noqa: E402,F401\n"
    )
    executor_args = f"--finish-seconds {spec.executor_finish_seconds}"
    if spec.executor_crash:
        executor_args += " --crash"
    run = run_dir
    holders = f"--holder {run}/holder-0.sock --holder {run}/holder-1.sock"
    conf = f"""\
[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://{run}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
nodaemon=true
user={getpass.getuser()}
pidfile={run}/supervisord.pid
logfile=/dev/null
logfile_maxbytes=0
childlogdir={log_dir}

[program:socket_holder]
command={PYTHON} -m supervise.socket_holder --host 127.0.0.1 --port {spec.port} --port-file {run}/{HTTP_PORT_FILE} {holders} --lock {run}/holder.lock --index %(process_num)d
process_name=%(program_name)s_%(process_num)d
numprocs=2
directory={APP_DIR}
priority=1
startsecs=3
startretries=2
autorestart=true
stopsignal=TERM
stopwaitsecs=2
stderr_events_enabled=true
environment=PYTHONUNBUFFERED="1"
{LOG_LINES}
[program:web]
command={PYTHON} -m supervise.serve_web {holders} --listener tcp -- {PYTHON} -m gunicorn -c {gunicorn_conf} {spec.web_app}
directory={APP_DIR}
priority=10
startsecs=4
startretries=3
autorestart=true
stopsignal=TERM
stopwaitsecs={spec.graceful_timeout + 2}
stopasgroup=true
killasgroup=true
stderr_events_enabled=true
environment=PYTHONUNBUFFERED="1"
{LOG_LINES}
"""  # noqa: E501
    if spec.executors:
        conf += f"""
[program:task_executor]
command={PYTHON} {TESTS_DIR}/support/fake_executor.py --consumer-num %(process_num)d {executor_args}
process_name=%(program_name)s_%(process_num)02d
numprocs={spec.executors}
directory={APP_DIR}
priority=5
startsecs=1
startretries=2
autorestart=true
stopsignal=TERM
stopwaitsecs={int(spec.executor_finish_seconds) + 2}
stopasgroup=true
killasgroup=true
stderr_events_enabled=true
environment=PYTHONUNBUFFERED="1"
{LOG_LINES}
"""
    conf += spec.extra
    path = run_dir / "supervisord.conf"
    path.write_text(conf)
    return path
