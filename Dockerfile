# RAGFlow-compatible backend under supervisord (docs/container.md).
#
#   docker build -t ragflow:production .
#   docker run -d -p 9380:9380 -e RAGFLOW_API_KEY=... ragflow:production            # production
#   docker run -d -p 9380:9380 -e RAGFLOW_API_KEY=... ragflow:production ./entrypoint.sh --dev-mode
#
# BASE_IMAGE may be any Debian-like image with python3 (3.11+) and python3-venv on PATH; the
# interpreter may live in /usr/local/bin (official images) or /usr/bin (Debian's python3).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
# uv and pip trust the operating system's CA store (TLS-intercepting proxies included).
ENV UV_SYSTEM_CERTS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    UV_LINK_MODE=copy \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /app
# Dependencies first, from the committed lock only, into /app/.venv; then the code. uv itself
# stays in this stage.
COPY pyproject.toml uv.lock ./
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}" \
 && /opt/uv/bin/uv venv --python python3 /app/.venv \
 && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project \
 && find /app/.venv -name '*.js.map' -delete  # JavaScript source maps (Swagger UI): never served
COPY . .
# Bytecode for everything under /app, dependencies included: the runtime user cannot write
# __pycache__, and unchecked-hash .pyc files stay valid whatever COPY does to mtimes (the image
# is immutable). Then the symlink that lets a plain `supervisorctl` find the rendered config:
# supervisorctl searches <dir of its binary>/../etc/supervisord.conf first.
RUN python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /app \
 && mkdir -p /app/.venv/etc \
 && ln -s /run/ragflow/supervisord.conf /app/.venv/etc/supervisord.conf

FROM ${BASE_IMAGE}
ARG APP_UID=10001
# nginx: the buffering reverse proxy in front of Gunicorn (the `proxy` program, PROXY=nginx). It
# runs as the ragflow user with everything in /run/ragflow; the package's own configuration and
# service are never used.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid "${APP_UID}" ragflow \
 && useradd --system --uid "${APP_UID}" --gid ragflow --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ragflow \
 && mkdir -p /data /var/log/ragflow /run/ragflow \
 && chown ragflow:ragflow /data /var/log/ragflow /run/ragflow \
 && chmod 0700 /data && chmod 0750 /var/log/ragflow /run/ragflow
COPY --from=build /app /app
# Container defaults (the same layout as deploy/supervisor/production.env); every setting can be
# overridden with -e (render_config.py --explain, docs/settings.md).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    LOG_DIR=/var/log/ragflow \
    LOG_TARGET=stdout \
    HOST_IP=0.0.0.0 \
    HOST_PORT=9380 \
    SUPERVISOR_RUN_DIR=/run/ragflow
WORKDIR /app
USER ragflow
VOLUME ["/data", "/var/log/ragflow"]
EXPOSE 9380
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-m", "api.healthcheck"]
# entrypoint.sh renders /run/ragflow/{supervisord.conf,gunicorn.conf.py,nginx.conf} (SUPERVISOR_RUN_DIR)
# from the environment, then execs supervisord (python -m supervise.launcher) as PID 1. Container
# arguments starting with "-" go to the renderer: --dev-mode or --production-mode; without one,
# RAGFLOW_MODE decides (default production). `./entrypoint.sh --dev-mode` (RAGFlow's form) works
# too, and any other command runs instead (`gunicorn -c gunicorn_config.py api.wsgi:application`).
ENTRYPOINT ["/app/entrypoint.sh"]
CMD []
