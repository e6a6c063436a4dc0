"""The panel registry over REST: list with filters, get, create, update, delete, latest."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pelbiot.models import Reading
from tests.support.readings import store


def test_create_get_update_delete_panel(client: TestClient) -> None:
    body = {
        "id": "trafo-a1",
        "name": "Trafo A1 Gedung Utama",
        "region": "Jakarta Selatan",
        "location": "Basement 1",
        "phases": 3,
        "nominal_voltage": 230,
        "rated_current": 630,
        "kva_rating": 400,
        "notes": "ONAN, 20 kV / 400 V",
    }
    created = client.post("/api/v1/panels", json=body)
    assert created.status_code == 201, created.text
    panel = created.json()
    assert panel["name"] == "Trafo A1 Gedung Utama"
    assert panel["kva_rating"] == 400
    assert panel["created_at"].endswith("+07:00")

    again = client.post("/api/v1/panels", json=body)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    patched = client.patch("/api/v1/panels/trafo-a1", json={"region": "Bandung", "notes": None})
    assert patched.status_code == 200
    assert patched.json()["region"] == "Bandung"
    assert patched.json()["notes"] is None
    assert patched.json()["name"] == "Trafo A1 Gedung Utama"

    assert client.get("/api/v1/panels/trafo-a1").json()["region"] == "Bandung"
    assert client.delete("/api/v1/panels/trafo-a1").status_code == 204
    missing = client.get("/api/v1/panels/trafo-a1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_panel_validation_errors_are_clear(client: TestClient) -> None:
    bad = client.post("/api/v1/panels", json={"id": "x/y", "phases": 2})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_input"
    fields = {tuple(d["loc"])[-1] for d in error["details"]}
    assert {"id", "phases"} <= fields
    unknown_field = client.post("/api/v1/panels", json={"id": "p1", "colour": "red"})
    assert unknown_field.status_code == 422
    assert client.patch("/api/v1/panels/nope", json={"name": "x"}).status_code == 404
    assert client.patch("/api/v1/panels/p1", json={"name": None}).status_code in (404, 422)


def test_list_filters_by_region_and_search(client: TestClient) -> None:
    for pid, name, region in [
        ("gi-1", "Gardu Induk Satu", "Jakarta"),
        ("gi-2", "Gardu Induk Dua", "Jakarta"),
        ("pabrik-1", "Panel Pabrik", "Bekasi"),
    ]:
        assert (
            client.post(
                "/api/v1/panels", json={"id": pid, "name": name, "region": region}
            ).status_code
            == 201
        )
    everything = client.get("/api/v1/panels").json()
    assert everything["total"] == 3
    jakarta = client.get("/api/v1/panels", params={"region": "Jakarta"}).json()
    assert [p["id"] for p in jakarta["items"]] == ["gi-1", "gi-2"]
    search = client.get("/api/v1/panels", params={"q": "PABRIK"}).json()
    assert [p["id"] for p in search["items"]] == ["pabrik-1"]
    paged = client.get("/api/v1/panels", params={"limit": 1, "offset": 1}).json()
    assert [p["id"] for p in paged["items"]] == ["gi-2"]
    assert paged["total"] == 3


def test_panels_are_created_on_first_reading_and_latest_is_served(client: TestClient) -> None:
    now = 1_795_000_000_000
    store(
        client,
        [
            Reading("trafo1", "voltage", now, 230.1),
            Reading("trafo1", "voltage", now + 1000, 231.5),
            Reading("trafo1", "current", now + 1000, 42.0),
            Reading("trafo2", "voltage", now, 229.0),
        ],
    )
    panels = client.get("/api/v1/panels").json()
    assert [p["id"] for p in panels["items"]] == ["trafo1", "trafo2"]
    assert panels["items"][0]["last_seen"] == "2026-11-18T18:06:41.000+07:00"
    detail = client.get("/api/v1/panels/trafo1").json()
    assert [m["metric"] for m in detail["metrics"]] == ["current", "voltage"]
    latest = client.get("/api/v1/panels/trafo1/latest").json()["values"]
    assert latest["voltage"]["value"] == 231.5
    assert latest["current"]["unit"] == "A"
    # an older reading arriving late does not replace the latest value
    store(client, [Reading("trafo1", "voltage", now - 5000, 100.0)])
    assert client.get("/api/v1/panels/trafo1/latest").json()["values"]["voltage"]["value"] == 231.5
    everyone = client.get("/api/v1/latest").json()
    assert [p["panel_id"] for p in everyone] == ["trafo1", "trafo2"]


def test_auto_create_off_rejects_unknown_panels(make_client) -> None:  # type: ignore[no-untyped-def]
    with make_client(auto_create_panels=False) as client:
        assert client.post("/api/v1/panels", json={"id": "known"}).status_code == 201
        store(
            client,
            [
                Reading("known", "voltage", 1_795_000_000_000, 230.0),
                Reading("stranger", "voltage", 1_795_000_000_000, 230.0),
            ],
        )
        assert [p["id"] for p in client.get("/api/v1/panels").json()["items"]] == ["known"]
        rejected = client.get("/api/v1/ingest/rejected").json()
        assert rejected[0]["reason"] == "unknown_panel"
        status = client.get("/api/v1/ingest/status").json()
        assert status["counters"]["rejected_by_reason"] == {"unknown_panel": 1}


def test_deleting_a_panel_removes_its_history_and_it_can_return(client: TestClient) -> None:
    now = 1_795_000_000_000
    store(client, [Reading("p9", "voltage", now, 230.0)])
    assert client.delete("/api/v1/panels/p9").status_code == 204
    assert client.get("/api/v1/latest").json() == []
    store(client, [Reading("p9", "voltage", now + 1000, 231.0)])
    history = client.get(
        "/api/v1/panels/p9/readings", params={"metric": "voltage", "start": now - 10_000}
    ).json()
    assert [p["value"] for p in history["series"][0]["points"]] == [231.0]


def test_a_conflicting_redelivery_keeps_the_first_value_everywhere(client: TestClient) -> None:
    """Same panel, metric and timestamp twice: history and latest both keep the first value."""
    ts = 1_795_000_000_000
    store(client, [Reading("dup", "voltage", ts, 230.0), Reading("dup", "voltage", ts, 999.0)])
    store(client, [Reading("dup", "voltage", ts, 500.0)])
    latest = client.get("/api/v1/panels/dup/latest").json()["values"]["voltage"]["value"]
    history = client.get(
        "/api/v1/panels/dup/readings", params={"metric": "voltage", "start": ts - 1, "end": ts + 1}
    ).json()["series"][0]["points"]
    assert latest == 230.0
    assert [p["value"] for p in history] == [230.0]
    assert client.get("/api/v1/ingest/status").json()["counters"]["duplicates"] == 2


def test_creating_panels_over_the_api_respects_the_panel_cap(make_client) -> None:  # type: ignore[no-untyped-def]
    """PELBIOT_MAX_PANELS bounds the site, whether panels come from readings or from the API."""
    with make_client(max_panels=2) as client:
        for panel_id in ("cap1", "cap2"):
            assert client.post("/api/v1/panels", json={"id": panel_id}).status_code == 201
        refused = client.post("/api/v1/panels", json={"id": "cap3"})
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert "PELBIOT_MAX_PANELS" in error["message"]
        assert error["details"] == {"max_panels": 2}
        assert client.get("/api/v1/panels/cap3").status_code == 404
        assert client.delete("/api/v1/panels/cap2").status_code == 204
        assert client.post("/api/v1/panels", json={"id": "cap3"}).status_code == 201
