"""Two small read-side holes: the rejected ring by scope, and the panel search as literal text."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi.testclient import TestClient

from pelbiot.security.permissions import Role
from tests.support.accounts import login_as
from tests.support.ingest import make_key, post_readings

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def test_a_region_viewer_sees_only_rejections_of_its_own_panels(
    make_client: ClientFactory, prefix: str
) -> None:
    with make_client() as client:
        # A North panel whose id is the topic prefix: a topic outside the scheme used to be
        # put down to its first level, so a North viewer saw rejections of any malformed topic.
        for panel, region in ((prefix, "North"), ("north-1", "North"), ("south-1", "South")):
            body = {"id": panel, "region": region}
            assert client.post("/api/v1/panels", json=body).status_code == 201
        key = make_key(client, ["ingest"])["key"]
        ts = int(time.time()) - 60
        for panel in ("north-1", "south-1", "south-1/x"):  # the last: a topic outside the scheme
            item = {"panel": panel, "metric": "voltage", "value": "nan?", "ts": ts}
            assert post_readings(client, key, item).status_code == 200
        everything = client.get("/api/v1/ingest/rejected").json()
        assert sorted(r["topic"] for r in everything) == sorted(
            f"{prefix}/{p}/voltage" for p in ("north-1", "south-1", "south-1/x")
        )
        login_as(client, "northern", Role.VIEWER, regions=["North"])
        seen = client.get("/api/v1/ingest/rejected").json()
        assert [r["topic"] for r in seen] == [f"{prefix}/north-1/voltage"]


def test_the_panel_search_is_literal(client: TestClient) -> None:
    for panel, name in (("a_1", "Load 100%"), ("ax1", "Load 1000"), ("b1", "back\\slash")):
        assert client.post("/api/v1/panels", json={"id": panel, "name": name}).status_code == 201

    def found(q: str) -> list[str]:
        return [p["id"] for p in client.get("/api/v1/panels", params={"q": q}).json()["items"]]

    assert found("%") == ["a_1"]
    assert found("_") == ["a_1"]
    assert found("0%") == ["a_1"]
    assert found("\\") == ["b1"]
    assert found("load") == ["a_1", "ax1"]
