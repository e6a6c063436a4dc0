"""The dashboard in a real browser (Playwright driving Debian's chromium) against a real server.

Screenshots of the overview and a panel page are taken by this run: into a temporary folder, or
into the folder ``PELBIOT_SCREENSHOT_DIR`` names (``make screenshots`` refreshes the docs' ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pelbiot.app import STATIC_DIR
from tests.support.mosquitto import Mosquitto, mosquitto_pub
from tests.support.processes import ServerProcess
from tests.support.publisher import WindowedPublisher
from tests.support.waiting import wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("PELBIOT_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / f"pelbiot-screenshots-{os.getpid()}"
)
XSS_NAME = "<img src=x onerror=alert(1)>"
ADMIN, ADMIN_PASSWORD = "kepala-teknik", "Rahasia-Panel-2026"
VIEWER, VIEWER_PASSWORD = "operator-malam", "Lihat-Saja-2026!"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not (STATIC_DIR / "index.html").exists(),
    reason="needs Debian's chromium and the built dashboard (make test installs and builds both)",
)


def screenshot(page: object, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)  # type: ignore[attr-defined]
    assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks empty"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture
def server(
    make_server: Callable[..., ServerProcess], mosquitto: Mosquitto
) -> Iterator[ServerProcess]:
    srv = make_server(PELBIOT_MQTT_URL=mosquitto.url, PELBIOT_LIVE_STATUS_INTERVAL_S="0.5")
    srv.create_user(ADMIN, ADMIN_PASSWORD, "admin")
    srv.start()
    yield srv


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(ADMIN, ADMIN_PASSWORD) as client:
        yield client


def log_in(
    page: object,
    server: ServerProcess,
    user: str = ADMIN,
    password: str = ADMIN_PASSWORD,
    path: str = "/",
) -> None:
    page.goto(server.base_url + path)  # type: ignore[attr-defined]
    page.fill('[data-testid="login-username"]', user)  # type: ignore[attr-defined]
    page.fill('[data-testid="login-password"]', password)  # type: ignore[attr-defined]
    page.click('[data-testid="login-submit"]')  # type: ignore[attr-defined]
    menu = page.locator('[data-testid="user-menu"]')  # type: ignore[attr-defined]
    menu.filter(has_text=user).wait_for()


@pytest.fixture
def simulator(mosquitto: Mosquitto, prefix: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pelbiot",
            "simulate",
            "--panels",
            "4",
            "--interval",
            "0.5",
            "--broker",
            mosquitto.url,
            "--prefix",
            prefix,
            "--seed",
            "7",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield
    proc.terminate()
    proc.wait(timeout=10)


def card_value(page: object, panel: str, field: str) -> str:
    return page.locator(f'[data-panel="{panel}"] [data-field="{field}"]').inner_text()  # type: ignore[attr-defined]


def test_overview_lists_the_simulated_panels(
    page: object, server: ServerProcess, api: httpx.Client, simulator: None
) -> None:
    wait_for(lambda: len(api.get("/api/v1/latest").json()) == 4, 15)
    edited = api.patch(
        "/api/v1/panels/trafo1",
        json={"name": "Trafo Gedung A", "region": "Jakarta", "kva_rating": 400},
    )
    assert edited.status_code == 200, edited.text
    log_in(page, server)
    cards = page.locator('[data-testid="panel-card"]')  # type: ignore[attr-defined]
    cards.first.wait_for()
    wait_for(lambda: cards.count() == 4, 10)
    assert page.locator('[data-testid="connection"]').get_attribute("data-state") == "connected"  # type: ignore[attr-defined]
    first = card_value(page, "trafo1", "v")
    wait_for(lambda: card_value(page, "trafo1", "v") != first, 5)
    assert "Trafo Gedung A" in page.locator('[data-panel="trafo1"] .name').inner_text()  # type: ignore[attr-defined]
    assert "Daring: 4" in page.locator('[data-testid="count-online"]').inner_text()  # type: ignore[attr-defined]
    page.select_option('[data-testid="region-filter"]', "Jakarta")  # type: ignore[attr-defined]
    wait_for(lambda: cards.count() == 1, 3)
    page.select_option('[data-testid="region-filter"]', "")  # type: ignore[attr-defined]
    page.fill('[data-testid="search"]', "trafo3")  # type: ignore[attr-defined]
    wait_for(lambda: cards.count() == 1, 3)
    page.fill('[data-testid="search"]', "")  # type: ignore[attr-defined]
    wait_for(lambda: cards.count() == 4, 3)
    page.wait_for_timeout(600)  # type: ignore[attr-defined]
    screenshot(page, "overview.png")
    page.set_viewport_size({"width": 390, "height": 844})  # type: ignore[attr-defined]
    screenshot(page, "overview-phone.png")


def test_published_value_shows_on_the_panel_page_within_a_second(
    page: object, server: ServerProcess, api: httpx.Client, mosquitto: Mosquitto, prefix: str
) -> None:
    mosquitto_pub(
        mosquitto,
        f"{prefix}/gardu9/telemetry",
        json.dumps({"voltage_l1": 230.0, "current_l1": 10.0, "power": 2300.0}),
    )
    wait_for(lambda: api.get("/api/v1/panels/gardu9").status_code == 200, 5)
    log_in(page, server, path="/#/panel/gardu9")
    cell = page.locator('[data-testid="live-values"] td[data-metric="voltage_l1"]')  # type: ignore[attr-defined]
    wait_for(lambda: "230,0" in cell.inner_text(), 5)
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    published = time.monotonic()
    mosquitto_pub(mosquitto, f"{prefix}/gardu9/telemetry", json.dumps({"voltage_l1": 241.7}))
    cell.filter(has_text="241,7").wait_for(timeout=2000)
    assert time.monotonic() - published < 1.0 + 0.2  # mosquitto_pub itself takes a moment


def test_history_chart_renders_a_day_of_data(
    page: object, server: ServerProcess, api: httpx.Client, mosquitto: Mosquitto, prefix: str
) -> None:
    end_ms = int(time.time() * 1000)
    messages = []
    for i in range(1440):  # a reading a minute, all inside the page's last-24-hours range
        ts = end_ms - (1439 - i) * 60_000 - 1000
        volts = 225 + 10 * ((i % 240) / 240)
        messages.append(
            (
                f"{prefix}/harian/telemetry",
                json.dumps(
                    {
                        "ts": ts,
                        "voltage_l1": volts,
                        "voltage_l2": volts - 1,
                        "voltage_l3": volts + 1,
                    }
                ).encode(),
            )
        )
    with WindowedPublisher("127.0.0.1", mosquitto.port, client_id=f"hist-{prefix}") as pub:
        pub.publish_all(messages)
    wait_for(
        lambda: api.get("/api/v1/ingest/status").json()["counters"]["readings_written"] >= 3 * 1440,
        20,
    )
    log_in(page, server, path="/#/panel/harian")
    chart = page.locator('[data-testid="history-chart"]')  # type: ignore[attr-defined]
    chart.locator("canvas").wait_for(timeout=10_000)
    wait_for(lambda: chart.get_attribute("data-points") == str(3 * 1440), 10)
    legend = chart.locator(".u-legend").inner_text()
    assert "voltage_l1" in legend
    screenshot(page, "panel.png", full_page=True)


def test_switching_language_changes_labels_and_number_format(
    page: object, server: ServerProcess, mosquitto: Mosquitto, prefix: str
) -> None:
    mosquitto_pub(mosquitto, f"{prefix}/bahasa/telemetry", json.dumps({"voltage_l1": 1234.5 / 10}))
    log_in(page, server)
    page.locator('[data-panel="bahasa"]').wait_for()  # type: ignore[attr-defined]
    nav = page.locator("nav")  # type: ignore[attr-defined]
    assert "Ringkasan" in nav.inner_text()
    wait_for(lambda: card_value(page, "bahasa", "v") == "123,5 V", 5)
    page.select_option('[data-testid="language"]', "en")  # type: ignore[attr-defined]
    wait_for(lambda: "Overview" in nav.inner_text(), 3)
    wait_for(lambda: card_value(page, "bahasa", "v") == "123.5 V", 3)
    page.reload()  # type: ignore[attr-defined]
    page.locator('[data-panel="bahasa"]').wait_for()  # type: ignore[attr-defined]
    assert "Overview" in page.locator("nav").inner_text()  # type: ignore[attr-defined]  # remembered


def test_page_reconnects_after_a_server_restart(
    page: object, server: ServerProcess, mosquitto: Mosquitto, prefix: str
) -> None:
    mosquitto_pub(mosquitto, f"{prefix}/ulang/volt", "230.1")
    log_in(page, server, path="/#/panel/ulang")
    connection = page.locator('[data-testid="connection"]')  # type: ignore[attr-defined]
    wait_for(lambda: connection.get_attribute("data-state") == "connected", 10)
    server.stop()
    wait_for(lambda: connection.get_attribute("data-state") != "connected", 10)
    server.start()
    wait_for(lambda: connection.get_attribute("data-state") == "connected", 20)
    mosquitto_pub(mosquitto, f"{prefix}/ulang/volt", "233.3")
    cell = page.locator('[data-testid="live-values"] td[data-metric="voltage"]')  # type: ignore[attr-defined]
    cell.filter(has_text="233,3").wait_for(timeout=5000)


def test_hostile_panel_name_shows_as_text(
    page: object, server: ServerProcess, api: httpx.Client
) -> None:
    created = api.post("/api/v1/panels", json={"id": "xss", "name": XSS_NAME})
    assert created.status_code == 201
    log_in(page, server)
    name = page.locator('[data-panel="xss"] .name')  # type: ignore[attr-defined]
    name.wait_for()
    assert name.inner_text() == XSS_NAME
    assert page.locator("img[src=x]").count() == 0  # type: ignore[attr-defined]
    page.goto(f"{server.base_url}/#/panel/xss")  # type: ignore[attr-defined]
    title = page.locator('[data-testid="panel-title"]')  # type: ignore[attr-defined]
    wait_for(lambda: title.inner_text() == XSS_NAME, 5)
    assert page.locator("img[src=x]").count() == 0  # type: ignore[attr-defined]


def test_login_errors_logout_and_a_viewer_cannot_reach_admin_pages(
    page: object, server: ServerProcess, api: httpx.Client
) -> None:
    created = api.post(
        "/api/v1/users",
        json={"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"},
    )
    assert created.status_code == 201, created.text
    page.goto(server.base_url)  # type: ignore[attr-defined]
    page.fill('[data-testid="login-username"]', VIEWER)  # type: ignore[attr-defined]
    page.fill('[data-testid="login-password"]', "not-the-password")  # type: ignore[attr-defined]
    page.click('[data-testid="login-submit"]')  # type: ignore[attr-defined]
    error = page.locator('[data-testid="login-error"]')  # type: ignore[attr-defined]
    wait_for(lambda: "login failed" in error.inner_text(), 5)
    page.fill('[data-testid="login-password"]', VIEWER_PASSWORD)  # type: ignore[attr-defined]
    page.click('[data-testid="login-submit"]')  # type: ignore[attr-defined]
    menu = page.locator('[data-testid="user-menu"]')  # type: ignore[attr-defined]
    menu.filter(has_text=VIEWER).wait_for()
    nav = page.locator("nav").inner_text()  # type: ignore[attr-defined]
    assert "Pengguna" not in nav
    assert "Log audit" not in nav
    page.goto(f"{server.base_url}/#/admin/users")  # type: ignore[attr-defined]
    heading = page.locator("h1").filter(has_text="tidak memiliki akses")  # type: ignore[attr-defined]
    heading.wait_for()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}  # type: ignore[attr-defined]
    session = {"pelbiot_access": cookies["pelbiot_access"]}
    assert httpx.get(f"{server.base_url}/api/v1/users", cookies=session).status_code == 403
    page.click('[data-testid="logout"]')  # type: ignore[attr-defined]
    page.locator('[data-testid="login-form"]').wait_for()  # type: ignore[attr-defined]
    # logout ended the session: the old cookie no longer opens anything
    assert httpx.get(f"{server.base_url}/api/v1/panels", cookies=session).status_code == 401
    log_in(page, server, path="/#/admin/users")
    table = page.locator('[data-testid="users-table"]')  # type: ignore[attr-defined]
    table.filter(has_text=VIEWER).wait_for()


def test_live_feed_uses_no_token_in_its_url_and_follows_access_changes(
    page: object, server: ServerProcess, api: httpx.Client, mosquitto: Mosquitto, prefix: str
) -> None:
    """The page's WebSocket carries no secret in its URL (the cookie authenticates it); a panel
    moved out of the viewer's region leaves the screen; a promotion shows the admin menu and every
    panel without a reload; disabling the account ends the feed."""
    for panel_id, region in (("utara1", "north"), ("utara2", "north")):
        created = api.post("/api/v1/panels", json={"id": panel_id, "region": region})
        assert created.status_code == 201, created.text
        mosquitto_pub(mosquitto, f"{prefix}/{panel_id}/volt", "230.1")
    user = api.post(
        "/api/v1/users",
        json={
            "username": VIEWER,
            "password": VIEWER_PASSWORD,
            "role": "viewer",
            "regions": ["north"],
        },
    )
    assert user.status_code == 201, user.text
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))  # type: ignore[attr-defined]
    log_in(page, server, VIEWER, VIEWER_PASSWORD)
    connection = page.locator('[data-testid="connection"]')  # type: ignore[attr-defined]
    wait_for(lambda: connection.get_attribute("data-state") == "connected", 10)
    page.locator('[data-panel="utara2"]').wait_for()  # type: ignore[attr-defined]
    assert sockets and all(url.endswith("/api/v1/live") for url in sockets), sockets
    moved = api.patch("/api/v1/panels/utara2", json={"region": "south"})
    assert moved.status_code == 200, moved.text
    page.locator('[data-panel="utara2"]').wait_for(state="detached")  # type: ignore[attr-defined]
    assert page.locator('[data-panel="utara1"]').count() == 1  # type: ignore[attr-defined]
    promoted = api.patch(f"/api/v1/users/{user.json()['id']}", json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    page.locator("nav").filter(has_text="Pengguna").wait_for()  # type: ignore[attr-defined]
    page.locator('[data-panel="utara2"]').wait_for()  # type: ignore[attr-defined]  # unscoped now
    disabled = api.patch(f"/api/v1/users/{user.json()['id']}", json={"disabled": True})
    assert disabled.status_code == 200, disabled.text
    page.locator('[data-testid="login-form"]').wait_for()  # type: ignore[attr-defined]
