"""`gunicorn -c gunicorn_config.py api.wsgi:application`, the command of RAGFlow's
production-mode guide, from the repository root or the image's working directory.

A shim over render_config.py: at start it renders gunicorn.conf.py from the environment
(HOST_IP, HOST_PORT, GUNICORN_WORKERS, GUNICORN_LOG_LEVEL ... in production mode, without the
proxy) with the same settings table, template and errors (exit 2, every problem listed), and runs
it here. Gunicorn then sees exactly what the rendered file sets; GUNICORN_CMD_ARGS and the command
line still apply after it. Under supervisord the bundle uses the rendered file instead.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from renderer.cli import standalone_gunicorn_conf

exec(compile(standalone_gunicorn_conf(os.environ), "gunicorn.conf.py (rendered)", "exec"))
