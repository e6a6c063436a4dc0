"""The decoders: every accepted form, recorded device payloads, a malformed corpus, fuzzing.

``MALFORMED`` is the table of bad input with the reason each must be refused with; the
end-to-end test (tests/ingest/test_bad_input_flow.py) publishes the same table through a real
broker.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pelbiot.decode import metrics_catalog, payload_errors, payloads, timestamps
from pelbiot.decode.payload_errors import REASONS, PayloadError, preview
from pelbiot.decode.payloads import DecodeConfig, decode, make_reading, split_topic
from pelbiot.decode.timestamps import parse_timestamp, utc_now_ms
from pelbiot.models import Decoded, Reading
from tests.support.malformed import MALFORMED, TM, Bad, V

RECORDED = Path(__file__).parents[1] / "payloads"
JAKARTA = ZoneInfo("Asia/Jakarta")
CONFIG = DecodeConfig()  # prefix "panel", site time Asia/Jakarta
T10 = 1_795_316_400_000  # 2026-11-22T10:00:00+07:00, the instant of the recorded files
NOW_MS = T10 + 3_600_000  # "now" in these tests: an hour later


def run(topic: str, payload: bytes, config: DecodeConfig = CONFIG, now: int = NOW_MS) -> Decoded:
    return decode(topic, payload, now, config)


def one(topic: str, payload: bytes, **kw: object) -> Reading:
    out = run(topic, payload, **kw)  # type: ignore[arg-type]
    assert out.rejections == [], out.rejections
    assert len(out.readings) == 1, out.readings
    return out.readings[0]


def reason_of(topic: str, payload: bytes, config: DecodeConfig = CONFIG) -> str:
    out = run(topic, payload, config)
    assert out.readings == [], out.readings
    assert len(out.rejections) == 1, out.rejections
    return out.rejections[0].reason


def load_recorded(name: str) -> list[tuple[str, bytes]]:
    """``mosquitto_sub -v`` output: ``<topic> <payload>`` per line, ``#`` lines are notes."""
    messages = []
    for line in (RECORDED / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            topic, _, payload = line.partition(" ")
            messages.append((topic, payload.encode()))
    return messages


def by_metric(out: Decoded) -> dict[str, float]:
    return {r.metric: r.value for r in out.readings}


# -- seed topics and forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "payload", "canonical", "value"),
    [
        ("volt", b"230.45", "voltage", 230.45),
        ("ampere", b"12.5", "current", 12.5),
        ("power", b"2875.3", "power", 2875.3),
        ("energy_cost", b"15234.75", "energy_cost", 15234.75),
        ("voltage", b"231", "voltage", 231.0),
        ("volt", b"230.45\n", "voltage", 230.45),
        ("volt", b"  230.45\r\n", "voltage", 230.45),
        ("volt", b"2.3045e2", "voltage", 230.45),
        ("volt", b"+230.45", "voltage", 230.45),
        ("power", b"-1500", "power", -1500.0),  # export: power is signed
        ("volt", b"\xef\xbb\xbf230.45", "voltage", 230.45),  # UTF-8 byte order mark
        ("kW", b"2.5", "power", 2500.0),  # alias with a scale
        ("rssi", b"-67", "rssi", -67.0),  # unknown metric: kept, flagged by the recorder
    ],
)
def test_plain_number_on_a_seed_topic(
    metric: str, payload: bytes, canonical: str, value: float
) -> None:
    reading = one(f"panel/trafo1/{metric}", payload)
    assert reading == Reading("trafo1", canonical, NOW_MS, value)
    assert type(reading.value) is float


@pytest.mark.parametrize(
    "payload",
    [
        b"230.45",
        b"230.45 ",
        b'"230.45"',
        b'" 230.45 "',
        b'{"value": 230.45}',
        b'{"value": "230.45"}',
        b'{"value": 230.45, "unit": "V", "quality": "good"}',
        b'  {"value": 230.45}  ',
        b'{"value": 230.45, "ts": null}',
    ],
)
def test_every_single_value_form_arrives_at_arrival_time(payload: bytes) -> None:
    assert one("panel/trafo1/volt", payload) == Reading("trafo1", "voltage", NOW_MS, 230.45)


def test_value_with_a_timestamp() -> None:
    reading = one("panel/trafo1/volt", b'{"value": 230.45, "ts": "2026-11-22T10:00:00+07:00"}')
    assert reading == Reading("trafo1", "voltage", T10, 230.45)


def test_integer_values_become_floats() -> None:
    reading = one("panel/trafo1/telemetry", b'{"voltage": 230}')
    assert reading.value == 230.0
    assert type(reading.value) is float


def test_telemetry_with_many_three_phase_metrics() -> None:
    out = run(
        "panel/gardu-7/telemetry",
        b'{"ts": 1795316400000, "voltage_l1": 231.2, "voltage_l2": 229.8, "voltage_l3": 230.4,'
        b' "current_l1": 15.1, "current_l2": 14.7, "current_l3": 16.2, "power": 10066.7,'
        b' "power_factor": 0.985, "frequency": 50.02}',
    )
    assert out.rejections == []
    assert by_metric(out) == {
        "voltage_l1": 231.2,
        "voltage_l2": 229.8,
        "voltage_l3": 230.4,
        "current_l1": 15.1,
        "current_l2": 14.7,
        "current_l3": 16.2,
        "power": 10066.7,
        "power_factor": 0.985,
        "frequency": 50.02,
    }
    assert {r.ts_ms for r in out.readings} == {T10}
    assert {r.panel_id for r in out.readings} == {"gardu-7"}


# -- recorded device payloads (tests/payloads/*.mqtt) ------------------------------------------


def test_recorded_seed_simulator() -> None:
    messages = load_recorded("seed_simulator.mqtt")
    assert len(messages) == 16
    readings = [one(topic, payload) for topic, payload in messages]
    assert {(r.panel_id, r.metric) for r in readings} == {
        (p, m) for p in ("trafo1", "trafo2") for m in ("voltage", "current", "power", "energy_cost")
    }
    assert readings[0] == Reading("trafo1", "voltage", NOW_MS, 227.28)
    assert readings[3] == Reading("trafo1", "energy_cost", NOW_MS, 10002372100.81)
    assert readings[5] == Reading("trafo2", "current", NOW_MS, 118.67)


def test_recorded_pelbiot_simulator_telemetry() -> None:
    messages = load_recorded("pelbiot_simulator_telemetry.mqtt")
    outs = [run(t, p) for t, p in messages]
    assert all(out.rejections == [] for out in outs)
    assert [len(out.readings) for out in outs] == [20, 20, 20, 20]
    first = by_metric(outs[0])
    assert first["voltage_l12"] == 393.95
    assert first["current_n"] == 112.71
    assert first["power_factor"] == 0.881
    assert first["energy"] == 6923494.2208
    assert first["temperature"] == 51.73
    assert {r.ts_ms for r in outs[0].readings} == {T10}
    assert {r.ts_ms for r in outs[3].readings} == {T10 + 2000}
    assert set(first) <= set(metrics_catalog.CATALOG)  # the simulator speaks canonical names


def test_recorded_three_phase_gateway() -> None:
    outs = [run(t, p) for t, p in load_recorded("three_phase_gateway.mqtt")]
    assert all(out.rejections == [] for out in outs)
    first = by_metric(outs[0])
    assert len(first) == 22  # "device" is metadata, not a metric
    assert "device" not in first
    assert first["reactive_power"] == -1520.4
    assert first["thd_current"] == 8.4
    assert {r.ts_ms for r in outs[0].readings} == {T10}
    assert {r.ts_ms for r in outs[1].readings} == {T10 + 1000}


def test_recorded_nested_gateway() -> None:
    [(topic, payload)] = load_recorded("nested_gateway.mqtt")
    out = run(topic, payload)
    assert out.rejections == []
    assert by_metric(out) == {
        "voltage_l1": 230.1,
        "voltage_l2": 231.4,
        "voltage_l3": 229.7,
        "voltage_l12": 399.2,
        "voltage_l23": 400.1,
        "voltage_l31": 398.8,
        "current_l1": 102.5,
        "current_l2": 98.1,
        "current_l3": 110.4,
        "current_n": 9.8,
        "power_l1": 22500.0,
        "power_l2": 21400.5,
        "power_l3": 24100.2,
        "power_factor_l1": 0.95,
        "power_factor_l2": 0.94,
        "power_factor_l3": 0.96,
        "frequency": 49.98,
        "oil_temperature": 61.5,
        "winding_temperature": 74.2,
    }
    assert {r.ts_ms for r in out.readings} == {T10}


def test_recorded_values_gateway() -> None:
    [(topic, payload)] = load_recorded("values_gateway.mqtt")
    out = run(topic, payload)
    assert out.rejections == []
    assert by_metric(out) == pytest.approx(
        {
            "voltage_l1": 230.5,
            "voltage_l2": 229.9,
            "voltage_l3": 231.0,
            "voltage_l12": 399.5,
            "current_l1": 45.2,
            "current_l2": 44.8,
            "current_l3": 46.1,
            "power": 31200.0,  # kW -> W
            "reactive_power": 9500.0,  # kvar -> var
            "apparent_power": 32600.0,  # kVA -> VA
            "power_factor": 0.957,
            "frequency": 50.0,
            "energy": 88123.4,
        }
    )
    assert {r.ts_ms for r in out.readings} == {T10}
    assert {r.panel_id for r in out.readings} == {"pm5560-a"}


def test_recorded_timestamp_forms_all_mean_the_same_instant() -> None:
    messages = load_recorded("timestamp_forms.mqtt")
    assert len(messages) == 16
    for topic, payload in messages:
        assert one(topic, payload).ts_ms == T10, topic


def test_recorded_numeric_strings() -> None:
    readings = []
    for topic, payload in load_recorded("numeric_strings.mqtt"):
        out = run(topic, payload)
        assert out.rejections == [], topic
        readings.extend(out.readings)
    got = {(r.metric, r.ts_ms): r.value for r in readings}
    assert got == {
        ("voltage", NOW_MS): 230.45,
        ("current", NOW_MS): 12.5,
        ("power", T10): 10066.7,
        ("voltage_l1", T10): 231.2,
        ("current_l1", T10): 15.1,
        ("frequency", T10): 50.02,
        ("power_factor", T10): -0.98,
    }


def test_every_recorded_file_has_a_test() -> None:
    tested = {
        "seed_simulator.mqtt",
        "pelbiot_simulator_telemetry.mqtt",
        "three_phase_gateway.mqtt",
        "nested_gateway.mqtt",
        "values_gateway.mqtt",
        "timestamp_forms.mqtt",
        "numeric_strings.mqtt",
    }
    assert {p.name for p in RECORDED.glob("*.mqtt")} == tested


# -- the malformed corpus ----------------------------------------------------------------------


def test_the_corpus_is_big_and_covers_every_decoder_reason() -> None:
    assert len(MALFORMED) >= 30
    assert len({b.id for b in MALFORMED}) == len(MALFORMED)
    # unknown_panel and the caps come from the writer, decode_error from a bug,
    # duplicate_metric always comes with the reading it duplicates (see
    # test_the_same_metric_twice_...)
    writer_reasons = {"unknown_panel", "too_many_panels", "too_many_metrics", "too_many_series"}
    decoder_reasons = set(REASONS) - writer_reasons - {"decode_error", "duplicate_metric"}
    assert {b.reason for b in MALFORMED} == decoder_reasons


@pytest.mark.parametrize("bad", MALFORMED, ids=lambda b: b.id)
def test_malformed_input_is_rejected_with_its_reason(bad: Bad) -> None:
    out = run(bad.topic, bad.payload)
    assert [r.reason for r in out.rejections] == [bad.reason], out.rejections
    assert out.readings == []
    rejection = out.rejections[0]
    assert rejection.at_ms == NOW_MS
    assert rejection.detail
    assert len(rejection.topic) <= 200
    assert len(rejection.payload) <= 203
    assert rejection.topic == bad.topic[:200]


def test_a_bad_value_in_telemetry_spares_the_good_ones() -> None:
    out = run(
        TM,
        b'{"voltage_l1": 231.2, "voltage_l2": NaN, "current_l1": -3, "current_l2": "x",'
        b' "current_l3": true, "power": null, "frequency": 50.0, "bad key!": 1}',
    )
    assert by_metric(out) == {"voltage_l1": 231.2, "frequency": 50.0}
    got = sorted((r.reason, r.detail.split(":")[0]) for r in out.rejections)
    assert got == [
        ("bad_metric_name", "'bad key!'"),
        ("non_finite", "'voltage_l2'"),
        ("not_a_number", "'current_l2'"),
        ("null_value", "'power'"),
        ("out_of_range", "'current_l1'"),
        ("wrong_type", "'current_l3'"),
    ]


def test_a_bad_timestamp_refuses_the_whole_telemetry_message() -> None:
    out = run(TM, b'{"ts": "soon", "voltage_l1": 231.2, "voltage_l2": 230.0}')
    assert out.readings == []
    assert [r.reason for r in out.rejections] == ["bad_timestamp"]


def test_rejection_detail_cannot_forge_log_lines() -> None:
    out = run(TM, b'{"x\\nWARNING forged": "y"}')
    assert "\n" not in out.rejections[0].detail


def test_preview_is_short_and_printable() -> None:
    assert preview(b"230.45") == "230.45"
    assert preview(b"x" * 1000) == "x" * 200 + "..."
    assert preview(b"\xff\xfe") == "\ufffd\ufffd"
    assert preview(b"") == ""


# -- decisions, pinned ---------------------------------------------------------------------------


def test_a_repeated_json_key_keeps_the_last_value() -> None:
    assert one(V, b'{"value": 1, "value": 2}').value == 2.0
    assert by_metric(run(TM, b'{"voltage": 1, "voltage": 2}')) == {"voltage": 2.0}


def test_the_same_metric_twice_keeps_the_first_and_says_so() -> None:
    out = run(TM, b'{"voltage": {"l1": 230}, "voltage_l1": 231, "V1": 232}')
    assert by_metric(out) == {"voltage_l1": 230.0}
    assert [r.reason for r in out.rejections] == ["duplicate_metric", "duplicate_metric"]


def test_timestamp_keys_in_order_of_precedence() -> None:
    t = T10
    doc = {"t": t - 3000, "time": t - 2000, "timestamp": t - 1000, "ts": t, "value": 1}
    assert one(V, orjson.dumps(doc)).ts_ms == t
    del doc["ts"]
    assert one(V, orjson.dumps(doc)).ts_ms == t - 1000
    del doc["timestamp"]
    assert one(V, orjson.dumps(doc)).ts_ms == t - 2000
    del doc["time"]
    assert one(V, orjson.dumps(doc)).ts_ms == t - 3000
    tele = {"Time": t - 2000, "TIMESTAMP": t - 1000, "voltage": 230}
    out = run(TM, orjson.dumps(tele))
    assert [(r.metric, r.ts_ms) for r in out.readings] == [("voltage", t - 1000)]


def test_a_null_timestamp_falls_back_to_the_next_key_or_arrival() -> None:
    assert one(V, b'{"value": 1, "ts": null, "time": 1795316400000}').ts_ms == T10
    assert one(TM, b'{"ts": null, "voltage": 1}').ts_ms == NOW_MS


def test_values_object_is_merged_with_top_level_metrics() -> None:
    out = run(TM, b'{"ts": 1795316400, "frequency": 50.0, "values": {"voltage": 230.0}}')
    assert out.rejections == []
    assert by_metric(out) == {"frequency": 50.0, "voltage": 230.0}
    assert {r.ts_ms for r in out.readings} == {T10}


def test_timestamp_inside_values_counts_when_the_top_has_none() -> None:
    out = run(TM, b'{"values": {"ts": 1795316400000, "voltage": 230.0}}')
    assert [(r.metric, r.ts_ms) for r in out.readings] == [("voltage", T10)]
    out = run(TM, b'{"ts": 1795316400000, "values": {"ts": 1795316401000, "voltage": 230.0}}')
    assert [r.ts_ms for r in out.readings] == [T10]


def test_values_that_is_not_an_object_is_reported_not_dropped() -> None:
    out = run(TM, b'{"values": [230, 231], "frequency": 50.0}')
    assert by_metric(out) == {"frequency": 50.0}
    assert [r.reason for r in out.rejections] == ["wrong_type"]
    assert "values" in out.rejections[0].detail


def test_values_inside_values_is_reported() -> None:
    out = run(TM, b'{"values": {"voltage": 230, "values": {"current": 5}}}')
    assert by_metric(out) == {"voltage": 230.0}
    assert [r.reason for r in out.rejections] == ["wrong_type"]


def test_metadata_keys_are_skipped_silently() -> None:
    doc = {k: "meta" for k in payloads._META_KEYS} | {"unit": "V", "units": "SI", "voltage": 230}
    out = run(TM, orjson.dumps(doc))
    assert out.rejections == []
    assert by_metric(out) == {"voltage": 230.0}


def test_non_numeric_status_fields_are_refused_per_field() -> None:
    out = run(TM, b'{"voltage": 230, "status": "OK"}')
    assert by_metric(out) == {"voltage": 230.0}
    assert [r.reason for r in out.rejections] == ["not_a_number"]


def test_deeper_nesting_is_refused_per_field() -> None:
    out = run(TM, b'{"voltage": {"l1": {"rms": 230}}, "frequency": 50}')
    assert by_metric(out) == {"frequency": 50.0}
    assert [r.reason for r in out.rejections] == ["wrong_type"]


def test_unknown_metrics_are_kept() -> None:
    out = run(TM, b'{"rssi": -67, "harmonic_5_l1": 3.2}')
    assert by_metric(out) == {"rssi": -67.0, "harmonic_5_l1": 3.2}


@pytest.mark.parametrize("topic", ["panel/trafo1/Telemetry", "panel/trafo1/TELEMETRY"])
def test_telemetry_topic_is_case_insensitive(topic: str) -> None:
    assert one(topic, b'{"voltage": 230}').metric == "voltage"


def test_a_multi_level_prefix_works() -> None:
    config = DecodeConfig(prefix="pln/jakarta")
    assert one("pln/jakarta/trafo1/volt", b"230", config=config).panel_id == "trafo1"
    assert reason_of("pln/jakarta/trafo1", b"230", config) == "bad_topic"
    assert reason_of("pln/trafo1/volt", b"230", config) == "bad_topic"
    assert reason_of("pln/jakartax/trafo1/volt", b"230", config) == "bad_topic"


def test_the_topic_cache_respects_the_prefix() -> None:
    topic = "panel/trafo1/volt"
    assert one(topic, b"230").panel_id == "trafo1"
    assert reason_of(topic, b"230", DecodeConfig(prefix="other")) == "bad_topic"
    assert one(topic, b"230").panel_id == "trafo1"


def test_the_topic_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payloads, "_ROUTES_MAX", 100)
    for i in range(250):
        one(f"panel/p{i}/volt", b"230")
    assert len(payloads._ROUTES) <= 100


def test_the_telemetry_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A sender inventing new keys in every message must not grow memory without limit, and
    # decoding stays right when plans are dropped and made again.
    monkeypatch.setattr(payloads, "_PLANS_MAX", 50)
    for i in range(200):
        doc = {"voltage": 230, f"x_sensor_{i}": i, "ts": T10}
        assert {r.metric for r in run(TM, orjson.dumps(doc)).readings} == {
            "voltage",
            f"x_sensor_{i}",
        }
    assert len(payloads._PLANS) <= 50
    wide = {f"x_{i}": float(i) for i in range(payloads._PLAN_KEYS_MAX + 1)}
    assert len(run(TM, orjson.dumps(wide)).readings) == len(wide)
    assert tuple(wide) not in payloads._PLANS


def test_payload_size_limit_is_inclusive() -> None:
    config = DecodeConfig(max_payload_bytes=64)
    assert one(V, b" " * 58 + b"230.45", config=config).value == 230.45
    assert reason_of(V, b" " * 59 + b"230.45", config) == "too_large"


def test_future_tolerance_and_the_year_2000_boundary() -> None:
    tol = CONFIG.future_tolerance_ms
    assert one(V, b'{"value": 1, "ts": %d}' % (NOW_MS + tol)).ts_ms == NOW_MS + tol
    assert reason_of(V, b'{"value": 1, "ts": %d}' % (NOW_MS + tol + 1)) == "future_timestamp"
    assert one(V, b'{"value": 1, "ts": 946684800000}').ts_ms == 946_684_800_000
    assert reason_of(V, b'{"value": 1, "ts": 946684799999}') == "old_timestamp"


def test_telemetry_value_limit_is_configurable() -> None:
    config = DecodeConfig(max_values=3)
    assert len(run(TM, b'{"a": 1, "b": 2, "c": 3}', config).readings) == 3
    assert reason_of(TM, b'{"a": 1, "b": 2, "c": 3, "d": 4}', config) == "too_many_values"
    nested = b'{"voltage": {"l1": 1, "l2": 2, "l3": 3, "l12": 4}}'
    assert reason_of(TM, nested, config) == "too_many_values"


def test_decoder_bugs_become_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(payloads, "_telemetry", broken)
    out = run(TM, b'{"voltage": 1}')
    assert [r.reason for r in out.rejections] == ["decode_error"]
    assert "KeyError" in out.rejections[0].detail


# -- public helpers ------------------------------------------------------------------------------


def test_split_topic() -> None:
    assert split_topic("panel/trafo1/volt", "panel") == ("trafo1", "volt")
    assert split_topic("panel/gardu-7.b_2/telemetry", "panel") == ("gardu-7.b_2", "telemetry")
    with pytest.raises(PayloadError) as exc:
        split_topic("panel/trafo1\n/volt", "panel")
    assert exc.value.reason == "bad_panel_id"


def test_make_reading() -> None:
    assert make_reading("p1", "kW", "2.5", 5) == Reading("p1", "power", 5, 2500.0)
    with pytest.raises(PayloadError) as exc:
        make_reading("p1", "volt", -1, 5)
    assert exc.value.reason == "out_of_range"
    with pytest.raises(PayloadError) as exc:
        make_reading("p1", "volt!", 1, 5)
    assert exc.value.reason == "bad_metric_name"


def test_payload_error_carries_reason_and_text() -> None:
    err = PayloadError("non_finite")
    assert err.reason == "non_finite"
    assert err.detail == REASONS["non_finite"] == str(err)
    assert isinstance(err, ValueError)


def test_utc_now_ms() -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    assert before - 5 <= utc_now_ms() <= before + 1000


# -- parse_timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        1795316400,
        1795316400.0,
        1795316400000,
        1795316400000.0,
        1795316400000000,
        1795316400000000000,
        "1795316400",
        "1795316400.000",
        "1795316400000",
        " 1795316400000 ",
        "2026-11-22T10:00:00+07:00",
        "2026-11-22T10:00:00.000+07:00",
        "2026-11-22T10:00:00+0700",
        "2026-11-22T03:00:00Z",
        "2026-11-22T03:00:00z",
        "2026-11-22T04:00:00+01:00",
        "2026-11-22T10:00:00",  # naive: site time
        "2026-11-22 10:00:00",
        "20261122T100000",
    ],
)
def test_parse_timestamp_forms(raw: object) -> None:
    assert parse_timestamp(raw, JAKARTA) == T10


def test_naive_time_is_site_time() -> None:
    assert parse_timestamp("2026-11-22T10:00:00", ZoneInfo("UTC")) == T10 + 7 * 3_600_000
    assert parse_timestamp("2026-11-22T10:00:00", ZoneInfo("Asia/Makassar")) == T10 - 3_600_000


def test_parse_timestamp_keeps_milliseconds_exact() -> None:
    # float arithmetic on .timestamp() * 1000 would turn some of these into ...x99
    for ms in range(0, 1000, 7):
        text = f"2026-11-22T10:00:00.{ms:03d}+07:00"
        assert parse_timestamp(text, JAKARTA) == T10 + ms
        assert parse_timestamp((T10 + ms) / 1000, JAKARTA) == T10 + ms


@pytest.mark.parametrize(
    "raw",
    [
        True,
        None,
        [1795316400],
        {"s": 1},
        -1,
        -1.5,
        float("nan"),
        float("inf"),
        10**20,
        10**400,
        1e30,
        "",
        "   ",
        "yesterday",
        "1_795_316_400",
        "\u0661\u0667\u0669\u0665",
        "2026-11-22T10:00:00" + "0" * 100,
        "x" * 10_000,
        "nan",
        "-1",
        "2026-13-01",
    ],
)
def test_parse_timestamp_refuses(raw: object) -> None:
    with pytest.raises(PayloadError) as exc:
        parse_timestamp(raw, JAKARTA)
    assert exc.value.reason == "bad_timestamp"


def test_extreme_iso_dates_do_not_overflow() -> None:
    assert parse_timestamp("0001-01-01T00:00:00+01:00", JAKARTA) < 0
    assert parse_timestamp("9999-12-31T23:59:59-01:00", JAKARTA) > 0
    assert reason_of(V, b'{"value": 1, "ts": "0001-01-01T00:00:00+01:00"}') == "old_timestamp"
    assert reason_of(V, b'{"value": 1, "ts": "9999-12-31T23:59:59"}') == "future_timestamp"


# -- property-based ------------------------------------------------------------------------------

# PELBIOT_FUZZ_EXAMPLES=20000 for a long run; the default keeps the suite fast
FUZZ = settings(max_examples=int(os.environ.get("PELBIOT_FUZZ_EXAMPLES", "300")), deadline=None)
_level = st.text(max_size=12) | st.sampled_from(["trafo1", "volt", "telemetry", "", "+", "#"])
_topics = st.one_of(
    st.text(max_size=60),
    st.lists(_level, min_size=0, max_size=5).map(lambda parts: "/".join(["panel", *parts])),
    st.tuples(_level, st.sampled_from(["volt", "telemetry", "kW", "rssi"])).map(
        lambda t: f"panel/{t[0]}/{t[1]}"
    ),
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_docs = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
_payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=60).map(str.encode),
    _json_docs.map(orjson.dumps),
    st.floats().map(lambda f: repr(f).encode()),
    st.integers().map(lambda i: str(i).encode()),
)


def _check_decoded(topic: str, out: Decoded, config: DecodeConfig = CONFIG) -> None:
    assert isinstance(out, Decoded)
    assert out.readings or out.rejections
    for rejection in out.rejections:
        assert rejection.reason in REASONS
        assert rejection.reason != "decode_error", rejection
    for reading in out.readings:
        assert type(reading) is Reading
        assert type(reading.value) is float and math.isfinite(reading.value)
        target = metrics_catalog.target(reading.metric)
        assert target is not None and target[0] == reading.metric
        assert target[2] <= reading.value <= target[3]
        assert topic.startswith(f"{config.prefix}/{reading.panel_id}/")
        assert timestamps.MIN_TS_MS <= reading.ts_ms <= NOW_MS + config.future_tolerance_ms


@FUZZ
@given(topic=_topics, payload=_payloads)
@example(topic="panel/trafo1/volt", payload=b"\x1c230")
@example(topic="panel/trafo1/volt", payload=b"230\x00")
@example(topic="panel/trafo1/telemetry", payload=b'{"values": {"values": {"x": 1}}}')
def test_fuzz_decode_never_raises(topic: str, payload: bytes) -> None:
    _check_decoded(topic, run(topic, payload))


_telemetry_docs = st.dictionaries(
    st.text(max_size=15) | st.sampled_from(["ts", "values", "voltage", "kW", "device", "Time"]),
    _json_scalars
    | st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3)
    | st.lists(_json_scalars, max_size=2),
    max_size=10,
)
_WHOLE = {"bad_timestamp", "future_timestamp", "old_timestamp", "no_values", "too_many_values"}


@FUZZ
@given(doc=_telemetry_docs)
def test_fuzz_telemetry_accounts_for_every_field(doc: dict[str, object]) -> None:
    out = run(TM, orjson.dumps(doc))
    _check_decoded(TM, out)
    if len(out.rejections) == 1 and not out.readings and out.rejections[0].reason in _WHOLE:
        return
    stored = {r.metric for r in out.readings}
    details = [r.detail for r in out.rejections]
    for key, raw in doc.items():
        target = metrics_catalog.target(key)
        if target is not None and target[0] in payloads._SPECIAL:
            continue
        if target is not None and type(raw) is dict:
            continue  # flattened: its members are accounted for under their own names
        refused = any(d.startswith(f"{key[:40]!r}: ") for d in details)
        assert (target is not None and target[0] in stored) or refused, key


@FUZZ
@given(payload=_payloads)
def test_fast_path_agrees_with_the_slow_path(payload: bytes) -> None:
    target = metrics_catalog.target("voltage")
    assert target is not None
    fast = run("panel/trafo1/voltage", payload)
    try:
        if len(payload) > CONFIG.max_payload_bytes:
            raise PayloadError("too_large")
        slow: object = [payloads._single("trafo1", target, payload, NOW_MS, CONFIG)]
    except PayloadError as exc:
        slow = exc.reason
    if fast.readings:
        assert fast.readings == slow
    else:
        assert [r.reason for r in fast.rejections] == [slow]


# Telemetry as meters send it: catalogue names (and aliases and units), a timestamp, metadata.
_meter_keys = st.sampled_from(
    [
        *sorted(metrics_catalog.CATALOG)[:12],
        *("Voltage_L1", "kW", "power_kw", "power", "energy_kwh", "unknown_thing"),
        *("ts", "timestamp", "Time", "t", "device", "serial", "values"),
    ]
)
_meter_values = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-5, max_value=500)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from(
        [T10, T10 // 1000, NOW_MS + 10**9, 0, None, True, "231.5", "2026-11-22T10:00"]
    )
    | st.dictionaries(st.sampled_from(["l1", "l2"]), st.floats(0, 300), max_size=2)
)
_meter_docs = st.dictionaries(_meter_keys, _meter_values, min_size=1, max_size=8)


@FUZZ
@given(docs=st.lists(_meter_docs, min_size=1, max_size=4))
def test_telemetry_plans_agree_with_the_general_path(docs: list[dict[str, object]]) -> None:
    # The plan of a key layout is made by its first message and reused for the next ones, so
    # several documents (often with the same keys) go through in turn.
    for doc in docs:
        payload = json.dumps(doc).encode()  # NaN, Infinity and huge integers as Python writes
        try:
            general = payloads._telemetry_general(
                TM, "trafo1", payload, payloads._json(payload), NOW_MS, CONFIG
            )
        except PayloadError as exc:
            general = Decoded([], [payload_errors.rejection(exc, None, TM, payload, NOW_MS)])
        assert run(TM, payload) == general, doc


_names = st.sampled_from(sorted(metrics_catalog.CATALOG))


@st.composite
def _in_range(draw: st.DrawFn) -> tuple[str, float]:
    name = draw(_names)
    entry = metrics_catalog.CATALOG[name]
    return name, draw(st.floats(min_value=entry.low, max_value=entry.high))


@FUZZ
@given(pair=_in_range())
def test_any_finite_value_in_range_round_trips(pair: tuple[str, float]) -> None:
    name, value = pair
    forms = [
        ("panel/p1/" + name, repr(value).encode()),
        ("panel/p1/" + name, f" {value!r}\n".encode()),
        ("panel/p1/" + name, orjson.dumps(value)),
        ("panel/p1/" + name, orjson.dumps(repr(value))),
        ("panel/p1/" + name, orjson.dumps({"value": value})),
        ("panel/p1/" + name, orjson.dumps({"value": value, "ts": T10})),
        ("panel/p1/" + name, json.dumps({"value": value}).encode()),
        (TM.replace("trafo1", "p1"), orjson.dumps({name: value})),
        (TM.replace("trafo1", "p1"), orjson.dumps({"values": {name: repr(value)}})),
    ]
    for topic, payload in forms:
        reading = one(topic, payload)
        assert (reading.panel_id, reading.metric, reading.value) == ("p1", name, value), payload
        assert str(reading.value) == str(value)  # -0.0 stays -0.0


_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3, minutes=-30)), JAKARTA]
)


@FUZZ
@given(
    ms=st.integers(min_value=timestamps.MIN_TS_MS, max_value=NOW_MS),
    zone=_zones,
)
def test_every_timestamp_form_maps_to_the_same_epoch_ms(ms: int, zone: object) -> None:
    when = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    assert (when - timestamps.EPOCH) // timedelta(milliseconds=1) == ms
    forms: list[object] = [
        ms,
        float(ms),
        str(ms),
        ms * 1000,
        ms * 1_000_000,
        ms / 1000,
        repr(ms / 1000),
        when.astimezone(zone).isoformat(timespec="milliseconds"),  # type: ignore[arg-type]
        when.astimezone(zone).isoformat(),  # type: ignore[arg-type]
        when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        when.astimezone(JAKARTA).replace(tzinfo=None).isoformat(timespec="milliseconds"),
    ]
    if ms % 1000 == 0:
        forms += [ms // 1000, str(ms // 1000)]
    for raw in forms:
        assert parse_timestamp(raw, JAKARTA) == ms, raw
        doc = orjson.dumps({"value": 230.0, "ts": raw})
        assert one(V, doc).ts_ms == ms, doc


@FUZZ
@given(raw=st.one_of(_json_docs, st.binary(max_size=30), st.integers()))
def test_parse_timestamp_raises_only_payload_errors(raw: object) -> None:
    try:
        ms = parse_timestamp(raw, JAKARTA)
    except PayloadError as exc:
        assert exc.reason == "bad_timestamp"
    else:
        assert type(ms) is int


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=30))
def test_numeric_text_is_exactly_what_the_grammar_says(text: str) -> None:
    """A text value is accepted iff it is ASCII float syntax without underscores."""
    assume(text.strip(" \t\n\r\x0b\x0c"))
    stripped = text.strip(" \t\n\r\x0b\x0c")
    try:
        value = payloads._number_text(text)
    except PayloadError:
        accepted = False
    else:
        accepted = True
        assert value == float(stripped) or math.isnan(value)
    if accepted:
        assert stripped.isascii()
        assert "_" not in stripped
