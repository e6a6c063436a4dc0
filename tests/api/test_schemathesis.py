"""schemathesis over the whole HTTP API with an admin token: no 5xx, answers match the schema.

The app runs in-process (ASGI); the WebSocket is not in the OpenAPI document and is covered by
the permission matrix and region tests instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import status_code_conformance

from pelbiot.app import create_app
from pelbiot.security.permissions import Role
from pelbiot.settings import load_settings
from tests.support.databases import fresh_database
from tests.support.extremes import TIME_FIELDS, TIME_PARAMETERS, edge_time_texts, time_texts
from tests.support.mosquitto import Mosquitto

ADMIN_PASSWORD = "Schema-walk-secret-1"
# Answers the access gate, the body-size limit and the error handlers can give on any route
# (400: a body FastAPI cannot even decode, such as invalid UTF-8).
GENERIC_ERRORS = {400, 401, 403, 404, 409, 413, 422, 429, 503}


def flatmap_query(ctx: schemathesis.HookContext, query: Any) -> st.SearchStrategy[Any]:
    """Besides what the schema allows, time parameters get extreme but valid values (year 1,
    year 9999, any offset, huge numbers): the schema cannot state their range, and a missing
    bound answered them with 500 (tests/support/extremes.py)."""
    operation = ctx.operation
    names = [p.name for p in operation.query if p.name in TIME_PARAMETERS] if operation else []
    if not names or not isinstance(query, dict):
        return st.just(query)
    # Half the cases keep what the schema made; the others send the time parameters alone (made
    # up values of the others would mostly stop at their own 422 first), an edge value half of
    # the time (a random date between year 1 and 9999 rarely is one).
    value = st.one_of(edge_time_texts(), time_texts())
    alone = st.fixed_dictionaries({}, optional={name: value for name in names})
    return st.one_of(st.just(query), alone)


def flatmap_body(ctx: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Time fields of bodies (an API key's expires_at) get the same edge values as queries."""
    if not isinstance(body, dict) or not TIME_FIELDS & body.keys():
        return st.just(body)
    edges = st.fixed_dictionaries({name: edge_time_texts() for name in TIME_FIELDS & body.keys()})
    return st.one_of(st.just(body), edges.map(lambda extra: {**body, **extra}))


def flatmap_path_parameters(ctx: schemathesis.HookContext, path: Any) -> st.SearchStrategy[Any]:
    """Half the cases name the panel that exists: a made-up id stops at the 404, before the
    code that works on real data (where the year-9999 overflow was)."""
    deleting = ctx.operation is not None and ctx.operation.method.upper() == "DELETE"
    if deleting or not isinstance(path, dict) or "panel_id" not in path:
        return st.just(path)  # (deleting it would leave the later operations none)
    return st.one_of(st.just(path), st.just({**path, "panel_id": "p1"}))


def documented_status_or_error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Instead of status_code_conformance: a status the route documents, or one of the generic
    errors in the one error shape (seed endpoints keep their own {"success": false} shape)."""
    documented = case.operation.responses.status_codes
    if str(response.status_code) in documented:
        return
    assert response.status_code in GENERIC_ERRORS, (
        f"undocumented status {response.status_code} (documented: {', '.join(documented)})"
    )
    body = response.json()
    if case.operation.path.startswith("/api/mqtt/") and "success" in body:
        assert body["success"] is False and isinstance(body["error"], str), body
        return
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)


@pytest.fixture
def api(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str
) -> Iterator[tuple[Any, Callable[[], dict[str, str]]]]:
    """The schema of a running app (with a broker, so publishing can succeed), and a way to get
    a fresh admin token (logout and password operations may end the session they use)."""
    with fresh_database(tmp_path) as url:
        app_settings = load_settings(
            database_url=url,
            data_dir=tmp_path / "data",
            mqtt_url=mosquitto.url,
            topic_prefix=prefix,
            mqtt_client_id=f"pelbiot-schema-{prefix}",
            rate_limit_per_address=1_000_000,
            login_attempts_per_address=1_000_000,
            login_attempts_per_account=1_000_000,
        )
        app = create_app(app_settings)
        # The API refuses NUL characters anywhere (422, pinned in test_hardening.py): a
        # documented constraint the schema cannot express, so none are generated.
        # A schema-valid request may still break a rule the schema cannot state (password
        # policy, the current password, a timestamp's format, a metric name, 1-10000 readings):
        # a 422 in the one error shape is the right answer to those; the seed endpoints answer
        # a topic outside <prefix>/<panel>/<metric> with their own 400.
        # The requests carry the admin's token; made-up values for the declared credentials
        # (an X-API-Key outranks the token) would only test refusals, which
        # test_openapi_security.py and test_permissions_matrix.py cover.
        config = schemathesis.Config.from_dict(
            {
                "generation": {"allow-x00": False, "with-security-parameters": False},
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2XX", "3XX", 400, 401, 403, 404, 409, 422, 429]
                    }
                },
            }
        )
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        schema.hooks.hook(flatmap_query)
        schema.hooks.hook(flatmap_path_parameters)
        schema.hooks.hook(flatmap_body)
        try:
            runtime = app.state.runtime
            assert runtime.ingest.wait_connected(10)
            runtime.users.create("fuzzer", ADMIN_PASSWORD, Role.ADMIN)
            runtime.store.create_panel("p1", {"name": "Panel 1", "region": "A"})

            def admin_headers() -> dict[str, str]:
                token = runtime.sessions.login("fuzzer", ADMIN_PASSWORD, address="t")
                return {"Authorization": f"Bearer {token.access_token}"}

            yield schema, admin_headers
        finally:
            asgi.shutdown_lifespans()


def test_api_conforms_to_its_schema(api: tuple[Any, Callable[[], dict[str, str]]]) -> None:
    schema, admin_headers = api
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        seen = statuses[operation.label] = Counter()
        headers = admin_headers()
        # Operations that take times get more cases: their edges need the real panel too.
        timed = any(p.name in TIME_PARAMETERS for p in operation.query)
        positive = 120 if timed else 30
        for mode, examples in ((GenerationMode.POSITIVE, positive), (GenerationMode.NEGATIVE, 20)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(
                    headers=headers,  # noqa: B023 - run() is called within the iteration
                    excluded_checks=[status_code_conformance],
                    additional_checks=[documented_status_or_error_shape],
                )
                seen[response.status_code] += 1  # noqa: B023

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break in a bare GET
            except (Exception, BaseExceptionGroup) as exc:  # collected, reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # Not vacuous: every operation was called, and at least half of them succeeded sometimes.
    assert len(statuses) == len(list(schema.get_all_operations()))
    succeeded = [op for op, got in statuses.items() if any(200 <= s < 300 for s in got)]
    assert len(succeeded) >= len(statuses) // 2, statuses
