"""The hot write path on a real database (SQLite, or PostgreSQL with PELBIOT_TEST_DATABASE_URL):
every reading stored once and bit-exact, whatever the batch size, and /latest first-wins."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from pelbiot.ingest.recorder import Recorder, newest_per_series
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.writer import Writer
from pelbiot.models import Reading
from tests.support.readings import T0, block_inserts, latest, stored, unblock_inserts
from tests.support.waiting import wait_for


def stream(n: int, *, panels: int = 7, seed: int = 1) -> list[Reading]:
    """``n`` readings over a few panels and metrics, keys unique, arrival order shuffled a
    little (as meters on one broker do)."""
    rng = random.Random(seed)
    metrics = ("voltage_l1", "current_l1", "power")
    out = [
        Reading(f"p{i % panels}", metrics[(i // panels) % 3], T0 + (i // (panels * 3)) * 1000, 0.0)
        for i in range(n)
    ]
    out = [r._replace(value=round(rng.uniform(0, 400), 3)) for r in out]
    for i in range(0, n - 1, 5):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 17, 4095, 4096, 4097, 10_000])
def test_every_batch_size_stores_each_reading_once(engine: Engine, n: int) -> None:
    # Statements come in power-of-two sizes and the last chunk is padded with copies of its
    # last row: the padding must never show up as rows or in the counts.
    recorder = Recorder(engine, auto_create_panels=True)
    readings = stream(n)
    result = recorder.write(readings)
    assert (result.written, result.duplicates) == (n, 0)
    assert stored(engine) == sorted(readings)


def test_a_redelivered_batch_is_counted_as_duplicates_and_stored_once(engine: Engine) -> None:
    recorder = Recorder(engine, auto_create_panels=True)
    first = stream(5000)
    recorder.write(first)
    again = [*first[1000:3000], first[0]]
    fresh = [Reading("p-new", "voltage_l1", T0 + i * 1000, 230.0 + i) for i in range(10)]
    result = recorder.write(again + fresh)
    assert (result.written, result.duplicates) == (10, len(again))
    assert stored(engine) == sorted(first + fresh)


def test_the_same_key_twice_in_one_batch_keeps_the_first(engine: Engine) -> None:
    recorder = Recorder(engine, auto_create_panels=True)
    result = recorder.write(
        [Reading("p1", "voltage_l1", T0, 230.0), Reading("p1", "voltage_l1", T0, 999.0)]
    )
    assert (result.written, result.duplicates) == (1, 1)
    assert stored(engine) == [("p1", "voltage_l1", T0, 230.0)]
    assert latest(engine) == {("p1", "voltage_l1"): (T0, 230.0)}


def test_values_come_back_bit_exact(engine: Engine) -> None:
    values = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, 230.00000000000003, -1e-300, 1e15 + 0.5]
    recorder = Recorder(engine, auto_create_panels=True)
    recorder.write([Reading("p1", "x_raw", T0 + i, v) for i, v in enumerate(values)])
    back = [row[3] for row in stored(engine)]
    assert [v.hex() for v in back] == [v.hex() for v in values]


def test_negative_zero_reads_back_as_zero(engine: Engine) -> None:
    # SQLite keeps an integral REAL as an integer on disk, so -0.0 comes back as 0.0;
    # PostgreSQL keeps the sign. Either way it equals zero.
    Recorder(engine, auto_create_panels=True).write([Reading("p1", "power", T0, -0.0)])
    assert stored(engine)[0][3] == 0.0


def test_latest_keeps_the_newest_and_an_older_batch_does_not_overwrite_it(
    engine: Engine,
) -> None:
    recorder = Recorder(engine, auto_create_panels=True)
    recorder.write([Reading("p1", "voltage_l1", T0 + 5000, 231.0)])
    late = [Reading("p1", "voltage_l1", T0 + s * 1000, 200.0 + s) for s in range(5)]
    result = recorder.write([*late, Reading("p1", "current_l1", T0, 10.0)])
    assert latest(engine) == {
        ("p1", "voltage_l1"): (T0 + 5000, 231.0),
        ("p1", "current_l1"): (T0, 10.0),
    }
    # what the batch itself brought (the live feed's view of it)
    assert sorted(result.newest) == [
        Reading("p1", "current_l1", T0, 10.0),
        Reading("p1", "voltage_l1", T0 + 4000, 204.0),
    ]


def test_unknown_panels_are_refused_when_auto_create_is_off(engine: Engine) -> None:
    Recorder(engine, auto_create_panels=True).write([Reading("known", "voltage_l1", T0, 230.0)])
    recorder = Recorder(engine, auto_create_panels=False)
    batch = [
        Reading("known", "voltage_l1", T0 + 1000, 231.0),
        Reading("stranger", "voltage_l1", T0, 1.0),
        Reading("known", "current_l1", T0 + 1000, 5.0),
    ]
    result = recorder.write(batch)
    assert result.refused == [(1, "unknown_panel")]
    assert (result.written, result.duplicates) == (2, 0)
    assert [r.panel_id for r in result.newest] == ["known", "known"]
    assert ("stranger", "voltage_l1", T0, 1.0) not in stored(engine)


_readings = st.lists(
    st.builds(
        Reading,
        st.sampled_from(["a", "b"]),
        st.sampled_from(["voltage_l1", "power"]),
        st.integers(T0, T0 + 5),
        st.floats(0, 10),
    ),
    max_size=40,
)


@given(readings=_readings)
def test_newest_per_series_is_the_latest_stamp_and_the_first_arrival_on_a_tie(
    readings: list[Reading],
) -> None:
    expected: dict[tuple[str, str], Reading] = {}
    for r in readings:
        seen = expected.get((r.panel_id, r.metric))
        if seen is None or r.ts_ms > seen.ts_ms:
            expected[(r.panel_id, r.metric)] = r
    assert sorted(newest_per_series(readings)) == sorted(expected.values())


def test_a_failed_insert_is_a_sqlalchemy_error_and_stores_nothing(engine: Engine) -> None:
    # The writer retries SQLAlchemy errors; a raw driver error would end its thread instead.
    recorder = Recorder(engine, auto_create_panels=True)
    recorder.write([Reading("p1", "voltage_l1", T0, 230.0)])
    block_inserts(engine)
    with pytest.raises(SQLAlchemyError, match="injected fault"):
        recorder.write([Reading("p1", "voltage_l1", T0 + i, 231.0) for i in range(1, 5000)])
    assert stored(engine) == [("p1", "voltage_l1", T0, 230.0)]
    assert latest(engine) == {("p1", "voltage_l1"): (T0, 230.0)}


def test_the_writer_retries_a_failing_database_until_it_takes_the_batch(engine: Engine) -> None:
    stats = IngestStats()
    writer = Writer(
        Recorder(engine, auto_create_panels=True),
        queue_size=10_000,
        batch_max=5_000,
        rejects=RejectLog(ring_size=10),
        stats=stats,
        retry_min_s=0.05,
        retry_max_s=0.2,
    )
    block_inserts(engine)
    committed = threading.Event()
    readings = stream(3000)
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        assert writer.submit(readings, committed.set, messages=3000)
        wait_for(lambda: stats.db_errors >= 2, 10)
        assert not committed.is_set() and stored(engine) == []
        unblock_inserts(engine)
        assert committed.wait(10)
    finally:
        writer.stop()
        thread.join(10)
    assert stored(engine) == sorted(readings)
    assert stats.db_ok
