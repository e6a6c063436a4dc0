"""What the recorder refuses or keeps out of /latest, on a real database (SQLite, or
PostgreSQL with PELBIOT_TEST_DATABASE_URL): caps on what first contact creates, a fast device
clock, and duplicates named one by one when a caller asks."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import Engine, text

from pelbiot.ingest.recorder import Caps, Recorder
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.writer import Writer
from pelbiot.models import Committed, Reading
from tests.support.readings import T0, latest, stored


def panels(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT id FROM panels")).scalars())


# -- a device clock running ahead ----------------------------------------------------------


def test_a_reading_from_a_fast_clock_is_stored_but_never_hides_real_ones(engine: Engine) -> None:
    now = T0
    recorder = Recorder(
        engine, auto_create_panels=True, latest_max_skew_ms=5_000, clock=lambda: now
    )
    recorder.write([Reading("p1", "voltage", now - 1_000, 229.0)])
    ahead = Reading("p1", "voltage", now + 60_000, 250.0)  # within the decoder's tolerance
    result = recorder.write([ahead])
    assert (result.written, result.newest) == (1, [])
    assert latest(engine) == {("p1", "voltage"): (now - 1_000, 229.0)}
    now += 1_000
    real = Reading("p1", "voltage", now, 231.0)
    assert recorder.write([real]).newest == [real]
    assert latest(engine) == {("p1", "voltage"): (now, 231.0)}
    # in history all along
    assert ("p1", "voltage", T0 + 60_000, 250.0) in stored(engine)
    # within the skew a reading is the latest as usual
    slightly = Reading("p1", "voltage", now + 4_000, 232.0)
    assert recorder.write([slightly]).newest == [slightly]
    assert latest(engine)[("p1", "voltage")] == (now + 4_000, 232.0)


def test_a_latest_value_stamped_ahead_from_before_is_replaced(engine: Engine) -> None:
    # written before the rule (or under a larger skew): the next real reading replaces it
    lenient = Recorder(
        engine, auto_create_panels=True, latest_max_skew_ms=600_000, clock=lambda: T0
    )
    lenient.write([Reading("p1", "voltage", T0 + 60_000, 250.0)])
    assert latest(engine) == {("p1", "voltage"): (T0 + 60_000, 250.0)}
    strict = Recorder(engine, auto_create_panels=True, clock=lambda: T0 + 1_000)
    strict.write([Reading("p1", "voltage", T0 + 1_000, 231.0)])
    assert latest(engine) == {("p1", "voltage"): (T0 + 1_000, 231.0)}
    # and an older reading still never replaces a newer, plausible one
    strict.write([Reading("p1", "voltage", T0, 1.0)])
    assert latest(engine) == {("p1", "voltage"): (T0 + 1_000, 231.0)}


def test_the_live_feed_gets_no_reading_from_a_fast_clock(engine: Engine) -> None:
    recorder = Recorder(engine, auto_create_panels=True, clock=lambda: T0)
    writer = Writer(
        recorder,
        queue_size=100,
        batch_max=100,
        rejects=RejectLog(ring_size=10),
        stats=IngestStats(),
    )
    batches: list[Committed] = []
    writer.add_listener(batches.append)  # what the live hub is given
    ahead, real = Reading("p1", "power", T0 + 60_000, 9.0), Reading("p1", "power", T0, 1.0)
    _through_writer(writer, [ahead, real])
    assert [(b.readings, b.newest) for b in batches] == [([ahead, real], [real])]


# -- caps on first contact -------------------------------------------------------------------


def _writer(recorder: Recorder, rejects: RejectLog) -> Writer:
    return Writer(recorder, queue_size=1_000, batch_max=5_000, rejects=rejects, stats=IngestStats())


def _through_writer(writer: Writer, readings: list[Reading]) -> dict[int, str]:
    thread = threading.Thread(target=writer.run)
    thread.start()
    outcome: dict[int, str] = {}
    done = threading.Event()
    try:
        assert writer.submit(readings, done.set, on_result=outcome.update)
        assert done.wait(10)
    finally:
        writer.stop()
        thread.join(10)
    return outcome


def test_past_the_panel_cap_new_panels_are_rejected_and_old_ones_keep_working(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(engine, auto_create_panels=True, caps=Caps(max_panels=3))
    recorder.write([Reading(f"p{i}", "voltage", T0, 230.0) for i in range(2)])
    rejects = RejectLog(ring_size=1_000)
    flood = [Reading(f"bogus{i:03}", "voltage", T0, 1.0) for i in range(200)]
    batch = [*flood[:100], Reading("p0", "voltage", T0 + 1_000, 231.0), *flood[100:]]
    with caplog.at_level(logging.INFO):
        outcome = _through_writer(_writer(recorder, rejects), batch)
    # one more panel fits (the first in id order); the rest is refused, p0 is written
    assert panels(engine) == ["bogus000", "p0", "p1"]
    assert outcome == {i: "too_many_panels" for i in range(1, 201) if i != 100}
    assert ("p0", "voltage", T0 + 1_000, 231.0) in stored(engine)
    assert rejects.counts() == {"too_many_panels": 199}
    ring = rejects.recent(1)[0]
    assert (ring.reason, ring.panel_id, ring.topic) == (
        "too_many_panels",
        "bogus199",
        "bogus199/voltage",
    )
    assert "PELBIOT_MAX_PANELS" in ring.detail
    # one log line for the refusals and one for the panel created, not one per panel
    refused_lines = [r for r in caplog.records if "too_many_panels" in r.getMessage()]
    assert len(refused_lines) == 1
    created_lines = [r for r in caplog.records if "created on first reading" in r.getMessage()]
    assert len(created_lines) == 1


def test_past_the_metric_caps_new_series_are_rejected(engine: Engine) -> None:
    recorder = Recorder(
        engine, auto_create_panels=True, caps=Caps(max_metrics_per_panel=2, max_series=3)
    )
    first = recorder.write(
        [
            Reading("p1", "voltage", T0, 230.0),
            Reading("p1", "current", T0, 5.0),
            Reading("p1", "x_unknown", T0, 1.0),  # third metric of p1
            Reading("p2", "voltage", T0, 230.0),  # fourth series of the site
            Reading("p2", "current", T0, 5.0),  # third (new series are taken in name order)
        ]
    )
    assert first.refused == [(2, "too_many_metrics"), (3, "too_many_series")]
    assert first.written == 3
    # existing series keep working, also for a recorder that starts with an empty cache
    again = Recorder(
        engine, auto_create_panels=True, caps=Caps(max_metrics_per_panel=2, max_series=3)
    ).write([Reading("p1", "current", T0 + 1, 6.0), Reading("p2", "power", T0, 1.0)])
    assert (again.written, again.refused) == (1, [(1, "too_many_series")])


# -- duplicates named one by one -------------------------------------------------------------


def test_duplicates_are_named_for_the_readings_asked_about(engine: Engine) -> None:
    recorder = Recorder(engine, auto_create_panels=False)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO panels (id, name, phases, created_ms, updated_ms) VALUES "
                "('p1', 'p1', 3, 0, 0)"
            )
        )
    recorder.write([Reading("p1", "voltage", T0, 230.0)])
    batch = [
        Reading("p1", "voltage", T0 + 1, 1.0),  # new (not asked about)
        Reading("p1", "voltage", T0, 2.0),  # stored before (asked)
        Reading("p1", "voltage", T0 + 1, 3.0),  # earlier in this batch (asked)
        Reading("p1", "voltage", T0 + 2, 4.0),  # new (asked)
        Reading("zz", "voltage", T0 + 2, 4.0),  # unknown panel (asked)
    ]
    result = recorder.write(batch, explain=[range(1, 5)])
    assert result.duplicate_at == [1, 2]
    assert result.refused == [(4, "unknown_panel")]
    assert (result.written, result.duplicates) == (2, 2)
