"""/api/v1/docs: the interactive API page (Swagger UI) over /api/v1/openapi.json.

Swagger UI's files come from the swagger-ui-bundle package (a locked dependency), served by the
bundle itself: no CDN, so the page works offline and behind the proxy like every other route.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import swagger_ui_bundle
from werkzeug.wrappers import Response

from api import config

PAGE_PATH = "/api/v1/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
# The files of Swagger UI's dist directory the page loads, with their media types.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
}
ASSET_MAX_AGE = 86400  # the package's files change only with the package

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>RAGFlow-compatible API</title>
  <link rel="stylesheet" href="{PAGE_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{PAGE_PATH}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{OPENAPI_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: false
    }});
  </script>
</body>
</html>
"""


def page(load: Callable[[], config.Config] | None = None) -> Response:
    return Response(PAGE, mimetype="text/html")


@cache
def _asset_bytes(name: str) -> bytes:
    return (Path(str(swagger_ui_bundle.swagger_ui_path)) / name).read_bytes()


def asset(name: str) -> Callable[..., Response]:
    """The handler serving one of ASSETS."""
    mimetype = ASSETS[name]

    def serve(load: Callable[[], config.Config] | None = None) -> Response:
        response = Response(_asset_bytes(name), mimetype=mimetype)
        response.cache_control.public = True
        response.cache_control.max_age = ASSET_MAX_AGE
        return response

    return serve
