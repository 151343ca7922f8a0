#!/bin/sh
# The image's entry point, and RAGFlow's `./entrypoint.sh [--production-mode|--dev-mode]`.
# A shim over render_config.py: render the configuration from the environment, then exec
# supervisord as PID 1 (render_config.py --exec). Arguments starting with "-" go to the renderer;
# any other command (`gunicorn ...`, `python ...`) runs instead, as in any image.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  ./entrypoint.sh|entrypoint.sh|"$here/entrypoint.sh") shift ;;  # `docker run IMAGE ./entrypoint.sh`
esac
case "${1:--}" in
  -*) ;;
  *) exec "$@" ;;
esac
python="$here/.venv/bin/python"
[ -x "$python" ] || python=python3
cd "$here"
exec "$python" render_config.py --exec "$@"
