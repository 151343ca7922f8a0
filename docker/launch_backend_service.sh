#!/bin/sh
# RAGFlow's `./docker/launch_backend_service.sh [--production-mode|--dev-mode]`: the bundle's
# entrypoint.sh (render_config.py --exec) with the same arguments.
exec "$(dirname "$0")/../entrypoint.sh" "$@"
