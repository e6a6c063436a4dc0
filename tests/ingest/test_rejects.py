"""The rejected-input record: counts, the bounded ring, and logging that never floods."""

from __future__ import annotations

import logging
import threading

import pytest

from pelbiot.decode.payloads import DecodeConfig, decode
from pelbiot.ingest.rejects import RejectLog
from pelbiot.models import Rejection


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rej(reason: str, n: int = 0, topic: str = "panel/p1/volt") -> Rejection:
    return Rejection(reason, f"detail {n}", topic, f"payload {n}", 1_795_316_400_000 + n)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pelbiot.ingest.rejects"]


def test_counts_per_reason_and_total() -> None:
    log = RejectLog(ring_size=10)
    log.add([rej("bad_json"), rej("bad_json"), rej("non_finite")])
    log.add([])
    assert log.counts() == {"bad_json": 2, "non_finite": 1}
    assert log.total() == 3


def test_the_ring_is_bounded_and_newest_first() -> None:
    log = RejectLog(ring_size=5)
    log.add(rej("bad_json" if i % 2 else "empty", i) for i in range(12))  # a generator works
    recent = log.recent(100)
    assert [r.detail for r in recent] == [f"detail {i}" for i in (11, 10, 9, 8, 7)]
    assert log.total() == 12  # counts are not bounded by the ring
    assert [r.detail for r in log.recent(2)] == ["detail 11", "detail 10"]
    assert [r.detail for r in log.recent(10, reason="empty")] == ["detail 10", "detail 8"]
    assert log.recent(10, reason="too_large") == []


def test_each_reason_is_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    log = RejectLog(ring_size=10, log_interval_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="pelbiot.ingest.rejects"):
        for i in range(1000):
            log.add([rej("bad_json", i)])
        log.add([rej("non_finite", i) for i in range(500)])
        assert len(warnings_of(caplog)) == 2
        clock.now += 59.9
        log.add([rej("bad_json", 5000)])
        assert len(warnings_of(caplog)) == 2
        clock.now += 0.2
        log.add([rej("bad_json", 6000), rej("bad_json", 6001)])
    lines = warnings_of(caplog)
    assert len(lines) == 3
    assert lines[0].startswith("rejected bad_json on 'panel/p1/volt': 'detail 0'")
    assert lines[0].endswith("0 similar not logged)")
    assert "non_finite" in lines[1]
    assert "detail 6000" in lines[2]
    assert lines[2].endswith("1000 similar not logged)")  # 999 + the one at 59.9 s
    assert log.counts() == {"bad_json": 1003, "non_finite": 500}


def test_zero_interval_logs_everything(caplog: pytest.LogCaptureFixture) -> None:
    log = RejectLog(ring_size=10, log_interval_s=0.0, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="pelbiot.ingest.rejects"):
        log.add([rej("empty", i) for i in range(3)])
    assert len(warnings_of(caplog)) == 3


def test_wire_content_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    log = RejectLog(ring_size=10)
    evil = Rejection(
        "bad_json", "x\nCRITICAL fake", "panel/p\n1/volt", "a\r\nERROR forged\x1b[31m", 0
    )
    with caplog.at_level(logging.WARNING, logger="pelbiot.ingest.rejects"):
        log.add([evil])
    [line] = warnings_of(caplog)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line


def test_long_payloads_are_cut_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    log = RejectLog(ring_size=10)
    with caplog.at_level(logging.WARNING, logger="pelbiot.ingest.rejects"):
        log.add([Rejection("too_large", "d", "t", "x" * 5000, 0)])
    [line] = warnings_of(caplog)
    assert len(line) < 300


def test_concurrent_adds_lose_nothing() -> None:
    log = RejectLog(ring_size=100)

    def worker(reason: str) -> None:
        for i in range(2000):
            log.add([rej(reason, i)])

    threads = [threading.Thread(target=worker, args=(f"r{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.counts() == {f"r{k}": 2000 for k in range(4)}
    assert len(log.recent(1000)) == 100


def test_a_flood_of_bad_messages_logs_one_line_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = DecodeConfig()
    log = RejectLog(ring_size=50, clock=FakeClock())
    bad = [b"NaN", b"hello", b"", b"{", b"-1e400"]
    with caplog.at_level(logging.WARNING, logger="pelbiot.ingest.rejects"):
        for i in range(10_000):
            log.add(decode("panel/p1/volt", bad[i % 5], 0, config).rejections)
    assert log.total() == 10_000
    assert len(log.recent(1000)) == 50
    assert len(warnings_of(caplog)) == 5
    assert log.counts() == {
        "non_finite": 2000,
        "not_a_number": 2000,
        "empty": 2000,
        "bad_json": 2000,
        "out_of_range": 2000,
    }


@pytest.mark.parametrize(("ring", "interval"), [(0, 60.0), (10, -1.0)])
def test_bad_arguments_are_refused(ring: int, interval: float) -> None:
    with pytest.raises(ValueError, match="must"):
        RejectLog(ring_size=ring, log_interval_s=interval)
