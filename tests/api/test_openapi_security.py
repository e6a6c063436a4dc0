"""The OpenAPI document's security is the real one.

It declares the credentials the access gate accepts, requires them on exactly the operations
``permissions.ROUTES`` does not mark public, and a request built the way a scheme describes gets
through the gate while the same request without it is refused (401).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pelbiot.api.deps import (
    ACCESS_COOKIE,
    API_KEY_SCHEME,
    BEARER_SCHEME,
    COOKIE_SCHEME,
    CSRF_COOKIE,
    CSRF_SCHEME,
)
from pelbiot.security.permissions import PUBLIC, ROUTES, SCOPE_PERMISSIONS, Perm, route_template
from tests.support.accounts import TEST_PASSWORD

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
Operation = tuple[str, str, dict[str, Any]]  # (METHOD, OpenAPI path, operation object)


def operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def rule_of(method: str, path: str) -> Perm | None:
    """The ROUTES rule for an OpenAPI path, found the way the gate finds it for a request."""
    template = route_template(method, path)
    assert template is not None, f"{method} {path} has no access rule"
    return ROUTES[(method, template)]


def concrete(path: str) -> str:
    return path.replace("{", "").replace("}", "")  # /panels/{panel_id} -> /panels/panel_id


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def credentials(client: TestClient) -> dict[str, str]:
    """A super admin's access token and CSRF cookie, an admin-scope API key; the client itself
    then sends nothing by default."""
    login = client.post("/api/v1/auth/login", json={"username": "root", "password": TEST_PASSWORD})
    assert login.status_code == 200, login.text
    csrf = login.cookies[CSRF_COOKIE]
    key = client.post("/api/v1/api-keys", json={"name": "docs", "scopes": ["admin"]})
    assert key.status_code == 201, key.text
    client.headers.pop("Authorization")
    client.cookies.clear()
    return {"token": login.json()["access_token"], "csrf": csrf, "key": key.json()["key"]}


def send(scheme: dict[str, Any], value: str, headers: dict[str, str]) -> None:
    """Put a credential where the scheme says it goes (a cookie as a browser sends it)."""
    if scheme["type"] == "http":
        assert scheme["scheme"] == "bearer"
        headers["Authorization"] = f"Bearer {value}"
    elif scheme["in"] == "header":
        headers[scheme["name"]] = value
    else:
        assert scheme["in"] == "cookie"
        cookie = f"{scheme['name']}={value}"
        headers["Cookie"] = f"{headers['Cookie']}; {cookie}" if "Cookie" in headers else cookie


def as_documented(
    spec: dict[str, Any], requirement: dict[str, list[str]], creds: dict[str, str]
) -> dict[str, str]:
    """Headers satisfying one security requirement (all its schemes) with these credentials."""
    schemes = spec["components"]["securitySchemes"]
    value = {
        BEARER_SCHEME: creds["token"],
        API_KEY_SCHEME: creds["key"],
        COOKIE_SCHEME: creds["token"],
        CSRF_SCHEME: creds["csrf"],
    }
    headers: dict[str, str] = {}
    for name in requirement:
        send(schemes[name], value[name], headers)
    if CSRF_SCHEME in requirement:  # double submit: the browser holds the cookie it echoes
        headers["Cookie"] += f"; {CSRF_COOKIE}={creds['csrf']}"
    return headers


def test_the_schemes_are_the_credentials_the_gate_reads(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes[BEARER_SCHEME] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    assert (schemes[API_KEY_SCHEME]["in"], schemes[API_KEY_SCHEME]["name"]) == (
        "header",
        "X-API-Key",
    )
    assert (schemes[COOKIE_SCHEME]["in"], schemes[COOKIE_SCHEME]["name"]) == (
        "cookie",
        ACCESS_COOKIE,
    )
    assert (schemes[CSRF_SCHEME]["in"], schemes[CSRF_SCHEME]["name"]) == ("header", "X-CSRF-Token")
    for name, scheme in schemes.items():
        assert scheme["description"], name
    # Anonymous read is a setting, not a second document: the schemes say what it changes.
    for name in (BEARER_SCHEME, API_KEY_SCHEME, COOKIE_SCHEME):
        assert "PELBIOT_ANONYMOUS_READ" in schemes[name]["description"], name


def test_security_is_required_exactly_where_routes_are_not_public(spec: dict[str, Any]) -> None:
    schemes = set(spec["components"]["securitySchemes"])
    documented = set()
    for method, path, operation in operations(spec):
        rule = rule_of(method, path)
        documented.add((method, route_template(method, path)))
        security = operation.get("security", [])
        if rule is PUBLIC:
            assert security == [], f"{method} {path} is public"
            continue
        assert security, f"{method} {path} needs {rule.value!r} but documents no security"
        assert all(set(requirement) <= schemes for requirement in security)
        alternatives = [set(requirement) for requirement in security]
        assert {BEARER_SCHEME} in alternatives
        cookie = {COOKIE_SCHEME, CSRF_SCHEME} if method != "GET" else {COOKIE_SCHEME}
        assert cookie in alternatives, f"{method} {path}"
        keys_may = any(rule in perms for perms in SCOPE_PERMISSIONS.values())
        assert ({API_KEY_SCHEME} in alternatives) == keys_may, f"{method} {path}"
    # Not vacuous: every HTTP rule is an operation of the document (the WebSocket is not).
    assert documented == {key for key in ROUTES if key[0] != "WS"}
    assert "security" not in spec  # no global requirement: public operations stay public


def test_a_request_made_as_documented_passes_and_one_without_is_refused(
    client: TestClient, spec: dict[str, Any], credentials: dict[str, str]
) -> None:
    checked = 0
    for method, path, operation in operations(spec):
        if rule_of(method, path) is PUBLIC:
            if method == "GET":
                assert client.get(path).status_code == 200, path
            continue
        refused = client.request(method, concrete(path))
        assert refused.status_code == 401, f"{method} {path}: {refused.status_code}"
        assert refused.headers["www-authenticate"] == "Bearer"
        if method != "GET" or "{" in path:
            continue  # writes are walked below, with bodies that succeed
        for requirement in operation["security"]:
            response = client.get(path, headers=as_documented(spec, requirement, credentials))
            assert response.status_code not in (401, 403), (path, requirement, response.text)
            checked += 1
        # The bearer scheme takes an API key too (the API key scheme is left out where no key
        # scope grants the permission: a key there is refused indeed).
        keys_may = {API_KEY_SCHEME: []} in operation["security"]
        with_key = client.get(path, headers={"Authorization": f"Bearer {credentials['key']}"})
        assert (with_key.status_code not in (401, 403)) == keys_may, (path, with_key.text)
        if not keys_may:
            headers = as_documented(spec, {API_KEY_SCHEME: []}, credentials)
            assert client.get(path, headers=headers).status_code == 403, path
    assert checked >= 20


def test_a_write_made_as_documented_is_accepted(
    client: TestClient, spec: dict[str, Any], credentials: dict[str, str]
) -> None:
    security = spec["paths"]["/api/v1/panels"]["post"]["security"]
    for n, requirement in enumerate(security):
        body = {"id": f"doc-{n}", "name": "Documented", "region": "A"}
        headers = as_documented(spec, requirement, credentials)
        response = client.post("/api/v1/panels", json=body, headers=headers)
        assert response.status_code == 201, (requirement, response.text)
    # The cookie alone is not enough for a write: that is why the CSRF header is in its
    # requirement.
    cookie_only = as_documented(spec, {COOKIE_SCHEME: []}, credentials)
    refused = client.post("/api/v1/panels", json={"id": "doc-x", "name": "X"}, headers=cookie_only)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]


def test_anonymous_read_keeps_the_same_document(make_client: ClientFactory) -> None:
    with make_client(login=False) as plain:
        expected = plain.get("/openapi.json").json()
    with make_client(login=False, anonymous_read=True) as open_read:
        assert open_read.get("/openapi.json").json() == expected
        # ...and the schemes' descriptions say what the setting changes: reads answer.
        assert open_read.get("/api/v1/panels").status_code == 200
        assert open_read.post("/api/v1/panels", json={"id": "a", "name": "A"}).status_code == 401
