"""A panel change and its audit entry commit together: when the audit insert fails, the change
is rolled back (no change without its record)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from pelbiot.errors import NotFoundError
from pelbiot.security.audit import AuditQuery


def block_audit(engine: Engine) -> None:
    """Injected fault: every insert into the audit log fails in the database."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER audit_fault BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'injected audit fault'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION audit_fault() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected audit fault'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER audit_fault BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_fault()"
            )


@pytest.mark.parametrize("change", ["create", "update", "delete"])
def test_a_failed_audit_insert_rolls_the_panel_change_back(client: TestClient, change: str) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    created = client.post("/api/v1/panels", json={"id": "p1", "name": "Before", "notes": "old"})
    assert created.status_code == 201
    audited = len(runtime.audit.query(AuditQuery(target="p1")))
    block_audit(runtime.engine)
    # The same app, answering a server error with a response instead of raising it here.
    faulty = TestClient(client.app, raise_server_exceptions=False)
    faulty.headers.update(client.headers)
    if change == "create":
        response = faulty.post("/api/v1/panels", json={"id": "p2"})
    elif change == "update":
        response = faulty.patch("/api/v1/panels/p1", json={"name": "After", "notes": "new"})
    else:
        response = faulty.delete("/api/v1/panels/p1")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    panel = runtime.store.get_panel("p1")
    assert (panel["name"], panel["notes"]) == ("Before", "old")
    with pytest.raises(NotFoundError):
        runtime.store.get_panel("p2")
    assert len(runtime.audit.query(AuditQuery(target="p1"))) == audited
