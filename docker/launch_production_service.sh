#!/bin/sh
# RAGFlow's `./docker/launch_production_service.sh`: the bundle in production mode
# (render_config.py --production-mode --exec).
exec "$(dirname "$0")/../entrypoint.sh" --production-mode "$@"
