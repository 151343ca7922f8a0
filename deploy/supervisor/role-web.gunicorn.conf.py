# Rendered by render_config.py from deploy/templates/gunicorn.conf.py.j2; do not edit.
# Usable on its own: gunicorn -c THIS_FILE api.wsgi:application binds HOST_IP:HOST_PORT.
# Under supervisord, supervise.serve_web adds --bind fd://N (the command line wins).
# GUNICORN_CMD_ARGS still applies: gunicorn reads it itself, after this file.
import os
import sys

chdir = '/app'
if chdir not in sys.path:
    sys.path.insert(0, chdir)

from supervise.gunicorn_hooks import (  # noqa: E402,F401
    child_exit,
    on_starting,
    post_fork,
    post_request,
    post_worker_init,
    pre_fork,
    pre_request,
    worker_abort,
    worker_exit,
)
from supervise.gunicorn_logging import ProxyAwareLogger  # noqa: E402

bind = ['0.0.0.0:9380']
workers = 5
worker_class = 'sync'
threads = 1
timeout = 300
graceful_timeout = 20
keepalive = 5
max_requests = 1000
max_requests_jitter = 50
preload_app = True
forwarded_allow_ips = '127.0.0.1'
limit_request_line = 8190
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
proc_name = "web"

loglevel = 'info'
# Behind the proxy (unix socket) the client address comes from nginx's X-Forwarded-For.
logger_class = ProxyAwareLogger
accesslog = "-"
errorlog = "-"
# client IP, time, request line (method, path and query), status, size, user agent, duration (ms),
# RAGFlow's envelope code (the API answers errors with HTTP 200; "-" without an envelope)
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(B)s "%(a)s" %(M)sms code=%({ragflow.code}e)s'
LOG_FORMAT = 'text'
PROGRAM = os.environ.get("SUPERVISOR_PROCESS_NAME", "web")


TEXT_FORMAT = "%(asctime)s " + PROGRAM + " [%(process)d] %(levelname)s %(name)s: %(message)s"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # shared.logformat: the JSON line of every Python process of the bundle
        "line": {"()": "shared.logformat.JsonFormatter", "program": PROGRAM}
        if LOG_FORMAT == "json"
        else {"format": TEXT_FORMAT},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stdout"},
        "error": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["error"]},
}
