"""The route table (api/routes/table.py) is the one source of the URL map, the auth rule and the
OpenAPI document: each is checked against the table through the real app."""

from __future__ import annotations

import re

import pytest
from support.api_client import Api

from api import parser_config
from api.parser_config import _PARSER_CONFIG
from api.routes import datasets
from api.routes.table import ROUTES, URLS, Auth, Route

NO_KEY = "`Authorization` can't be empty"


def concrete(path: str) -> str:
    """A request path for a rule: every variable filled with a well-formed id."""
    return re.sub(r"<[^<>]+>", "0" * 32, path)


def test_the_map_and_the_document_list_the_same_routes(api: Api) -> None:
    response = api.raw("GET", "/api/v1/openapi.json", key=None)
    assert response.status_code == 200
    paths = response.get_json()["paths"]
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    mapped = {
        (re.sub(r"<([^<>]+)>", r"{\1}", rule.rule), method)
        for rule in URLS.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert mapped == documented
    assert len(mapped) == len(ROUTES)  # one record per route, no two records for one route
    for route in ROUTES:
        op = paths[re.sub(r"<([^<>]+)>", r"{\1}", route.path)][route.method.lower()]
        assert op["operationId"] == route.operation and op["summary"] == route.summary
        names = [p["name"] for p in op.get("parameters", ()) if p["in"] == "path"]
        assert names == re.findall(r"<([^<>]+)>", route.path)
        assert (op.get("security") == []) == (route.auth is Auth.NONE)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_applies_its_auth_rule_from_the_table(api: Api, route: Route) -> None:
    response = api.raw(route.method, concrete(route.path), key=None)
    text = response.get_data(as_text=True)
    if route.auth is Auth.KEY:
        assert response.status_code == 200
        assert response.get_json() == {"code": 0, "message": NO_KEY, "data": False}
    else:
        assert response.status_code in (200, 503) and NO_KEY not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("path", ["/api/v1/datasets", "/api/v1/datasets/"])
def test_a_trailing_slash_reaches_the_same_route_as_in_ragflow(api: Api, path: str) -> None:
    created = api.ok("POST", path, json={"name": f"slash{len(path)}"})
    listed = api.ok("GET", path)
    assert created["id"] in {d["id"] for d in listed}
    assert api.raw("GET", "/v1/system/ping/", key=None).data == b"pong"
    assert api.raw("GET", f"/api/v1/datasets/{created['id']}/documents/").status_code == 200


def test_the_parser_config_schema_is_the_validators_own(api: Api) -> None:
    paths = api.raw("GET", "/api/v1/openapi.json", key=None).get_json()["paths"]
    create = paths["/api/v1/datasets"]["post"]["requestBody"]["content"]["application/json"]
    schema = create["schema"]["properties"]["parser_config"]
    assert schema == parser_config.JSON_SCHEMA
    assert create["schema"] == datasets.CREATE.json_schema()  # the validator's own description
    assert create["schema"]["additionalProperties"] is False  # unknown fields are refused
    assert set(schema["properties"]) == set(_PARSER_CONFIG.fields)
    assert schema["properties"]["chunk_token_num"] == {
        "type": "integer", "minimum": 1, "maximum": 2048
    }  # fmt: skip
    assert schema["properties"]["raptor"]["properties"]["threshold"] == {
        "type": "number", "minimum": 0.0, "maximum": 1.0
    }  # fmt: skip
