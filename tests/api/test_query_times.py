"""Times in queries at the edges of what Python and the databases hold: a clear 422 that names
the parameter, never a 500 (years 1 and 9999 used to overflow while printing the answer)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.support.extremes import EDGE_TIMES, time_texts

ROUTES = (
    ("/api/v1/panels/p1/readings", ("start", "end")),
    ("/api/v1/audit", ("since", "until")),
)


@pytest.fixture
def panel_client(client: TestClient) -> TestClient:
    assert client.post("/api/v1/panels", json={"id": "p1"}).status_code == 201
    return client


def _check(response: object, parameter: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status in (200, 422), response.text  # type: ignore[attr-defined]
    if status == 422:
        error = response.json()["error"]  # type: ignore[attr-defined]
        assert set(error) == {"code", "message", "details"}
        # either our own message naming the parameter or FastAPI's validation detail
        assert parameter in error["message"] or parameter in str(error["details"])


@pytest.mark.parametrize("value", EDGE_TIMES)
@pytest.mark.parametrize(("path", "parameters"), ROUTES)
def test_edge_times_get_a_clear_answer(
    panel_client: TestClient, path: str, parameters: tuple[str, str], value: str
) -> None:
    for parameter in parameters:
        _check(panel_client.get(path, params={parameter: value}), parameter)


def test_the_far_ends_name_the_supported_range(panel_client: TestClient) -> None:
    answer = panel_client.get("/api/v1/panels/p1/readings", params={"end": "9999-12-31T23:59:59Z"})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("end: '9999-12-31T23:59:59Z' is outside")
    assert "1970-01-01T00:00:00Z .. 9999-12-29T00:00:00Z" in answer.json()["error"]["message"]
    answer = panel_client.get("/api/v1/audit", params={"since": "0001-01-01"})
    assert answer.status_code == 422 and "since" in answer.json()["error"]["message"]
    # the ends of the range itself work
    whole = panel_client.get(
        "/api/v1/panels/p1/readings",
        params={"start": "1970-01-01T00:00:00Z", "end": "9999-12-29T00:00:00Z", "max_points": 10},
    )
    assert whole.status_code == 200, whole.text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=time_texts(), end=time_texts())
def test_any_time_pair_gets_a_clear_answer(panel_client: TestClient, start: str, end: str) -> None:
    answer = panel_client.get("/api/v1/panels/p1/readings", params={"start": start, "end": end})
    assert answer.status_code in (200, 422), answer.text
