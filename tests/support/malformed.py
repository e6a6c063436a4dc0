"""Bad input and the reason each must be refused with: the decoder tests check every row, and
the end-to-end test publishes the same table through a real broker."""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Bad:
    id: str
    topic: str  # "panel/..."; the broker test swaps in its own prefix
    payload: bytes
    reason: str
    wire: bool = True  # False: a broker would not carry it (wildcards, another prefix)


V = "panel/trafo1/volt"
A = "panel/trafo1/ampere"
TM = "panel/trafo1/telemetry"

MALFORMED = [
    # not a number / not JSON
    Bad("text", V, b"hello", "not_a_number"),
    Bad("number_with_unit", V, b"230.45 V", "not_a_number"),
    Bad("decimal_comma", V, b"230,45", "not_a_number"),
    Bad("underscore_number", V, b"1_000", "not_a_number"),
    Bad("arabic_indic_digits", V, "\u0662\u0663\u0660".encode(), "not_a_number"),
    Bad("fullwidth_digits", V, "\uff12\uff13\uff10".encode(), "not_a_number"),
    Bad("hex", V, b"0xE6", "not_a_number"),
    Bad("two_numbers", V, b"230.1 230.2", "not_a_number"),
    Bad("json_string_not_number", V, b'"abc"', "not_a_number"),
    Bad("json_value_empty_string", V, b'{"value": ""}', "not_a_number"),
    Bad("single_quoted_json", V, b"{'value': 230}", "bad_json"),
    Bad("truncated_json", V, b'{"value": 23', "bad_json"),
    Bad("trailing_garbage", V, b'{"value": 230} xyz', "bad_json"),
    Bad("two_documents", V, b'{"value": 1}{"value": 2}', "bad_json"),
    Bad("deeply_nested_value", V, b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}", "bad_json"),
    Bad("deeply_nested_telemetry", TM, b'{"a":' * 3000 + b"1" + b"}" * 3000, "bad_json"),
    Bad("telemetry_not_json", TM, b"voltage=230", "bad_json"),
    # NaN, infinities, huge numbers, out of range
    Bad("nan", V, b"NaN", "non_finite"),
    Bad("nan_lower", V, b"nan", "non_finite"),
    Bad("infinity", V, b"Infinity", "non_finite"),
    Bad("minus_inf", V, b"-inf", "non_finite"),
    Bad("json_nan", V, b'{"value": NaN}', "non_finite"),
    Bad("json_minus_infinity", V, b'{"value": -Infinity}', "non_finite"),
    Bad("string_nan", V, b'"NaN"', "non_finite"),
    Bad("telemetry_nan", TM, b'{"voltage_l1": NaN}', "non_finite"),
    Bad("huge_1e308", V, b"1e308", "out_of_range"),
    Bad("huge_1e400", V, b"1e400", "out_of_range"),
    Bad("json_1e400", V, b'{"value": 1e400}', "out_of_range"),
    Bad("huge_integer", V, b'{"value": 1' + b"0" * 400 + b"}", "out_of_range"),
    Bad("enormous_integer", V, b'{"value": 1' + b"0" * 5000 + b"}", "out_of_range"),
    Bad("negative_current", A, b"-5", "out_of_range"),
    Bad("voltage_too_high", V, b"5000", "out_of_range"),
    Bad("power_factor_as_percent", "panel/trafo1/pf", b"95", "out_of_range"),
    Bad("kw_overflows_after_scaling", "panel/trafo1/kW", b"1e306", "out_of_range"),
    Bad("unknown_metric_absurd", "panel/trafo1/rssi", b"1e16", "out_of_range"),
    # wrong types
    Bad("bool_true", V, b"true", "wrong_type"),
    Bad("json_bool_value", V, b'{"value": false}', "wrong_type"),
    Bad("list", V, b"[230.45]", "wrong_type"),
    Bad("object_value", V, b'{"value": {"l1": 230}}', "wrong_type"),
    Bad("list_value", V, b'{"value": [230, 231]}', "wrong_type"),
    Bad("telemetry_list", TM, b"[1, 2, 3]", "wrong_type"),
    Bad("telemetry_number", TM, b"230.45", "wrong_type"),
    Bad("telemetry_bool_metric", TM, b'{"voltage_l1": true}', "wrong_type"),
    Bad("null", V, b"null", "null_value"),
    Bad("json_null_value", V, b'{"value": null}', "null_value"),
    Bad("telemetry_null_metric", TM, b'{"voltage_l1": null}', "null_value"),
    Bad("object_without_value", V, b'{"v": 230.45}', "no_values"),
    Bad("empty_object", V, b"{}", "no_values"),
    Bad("telemetry_empty_object", TM, b"{}", "no_values"),
    Bad("telemetry_only_metadata", TM, b'{"ts": 1795316400, "device": "gw-01"}', "no_values"),
    Bad(
        "telemetry_too_many", TM, orjson.dumps({f"m{i}": 1 for i in range(1100)}), "too_many_values"
    ),
    Bad("telemetry_bad_key", TM, b'{"volt!": 230}', "bad_metric_name"),
    # timestamps
    Bad("future_ts", V, b'{"value": 230, "ts": "2100-01-01T00:00:00Z"}', "future_timestamp"),
    Bad("future_ts_epoch_ms", V, b'{"value": 230, "ts": 4102444800000}', "future_timestamp"),
    Bad(
        "telemetry_future",
        TM,
        b'{"ts": "2100-01-01T00:00:00Z", "voltage": 230}',
        "future_timestamp",
    ),
    Bad("old_ts", V, b'{"value": 230, "ts": "1999-12-31T23:59:59Z"}', "old_timestamp"),
    Bad("ts_zero", V, b'{"value": 230, "ts": 0}', "old_timestamp"),
    Bad("ts_text", V, b'{"value": 230, "ts": "yesterday"}', "bad_timestamp"),
    Bad("ts_bool", V, b'{"value": 230, "ts": true}', "bad_timestamp"),
    Bad("ts_negative", V, b'{"value": 230, "ts": -5}', "bad_timestamp"),
    Bad("ts_list", V, b'{"value": 230, "ts": [2026, 11, 22]}', "bad_timestamp"),
    Bad("ts_too_big", V, b'{"value": 230, "ts": 1e30}', "bad_timestamp"),
    Bad("ts_hour_24", V, b'{"value": 230, "ts": "2026-11-22T24:00:00"}', "bad_timestamp"),
    Bad("ts_nan", V, b'{"value": 230, "ts": NaN}', "bad_timestamp"),
    # empty, too large, not UTF-8
    Bad("empty", V, b"", "empty"),
    Bad("whitespace_only", V, b" \t\r\n ", "empty"),
    Bad("telemetry_empty", TM, b"", "empty"),
    Bad("one_megabyte", V, b"1" * 1_000_000, "too_large"),
    Bad("one_megabyte_json", TM, b'{"a": "' + b"x" * 1_000_000 + b'"}', "too_large"),
    Bad("not_utf8", V, b"\xff\xfe\x00\x01", "not_utf8"),
    Bad("latin1_text", V, "230,5 \u00b0".encode("latin-1"), "not_utf8"),
    Bad("not_utf8_in_json", V, b'{"value": "\xff"}', "not_utf8"),
    Bad("not_utf8_telemetry", TM, b'{"voltage_l1": 230, "\xc3\x28": 1}', "not_utf8"),
    # topics
    Bad("prefix_only", "panel", b"230.45", "bad_topic"),
    Bad("too_few_levels", "panel/trafo1", b"230.45", "bad_topic"),
    Bad("too_many_levels", "panel/trafo1/volt/extra", b"230.45", "bad_topic"),
    Bad("empty_panel_id", "panel//volt", b"230.45", "bad_topic"),
    Bad("empty_metric", "panel/trafo1/", b"230.45", "bad_topic"),
    Bad("trailing_slash", "panel/trafo1/volt/", b"230.45", "bad_topic"),
    Bad("bad_panel_chars", "panel/trafo 1!/volt", b"230.45", "bad_panel_id"),
    Bad("panel_id_too_long", "panel/" + "x" * 65 + "/volt", b"230.45", "bad_panel_id"),
    Bad("panel_id_non_ascii", "panel/gardu-\u00e9/volt", b"230.45", "bad_panel_id"),
    Bad("panel_id_leading_dot", "panel/.hidden/volt", b"230.45", "bad_panel_id"),
    Bad("metric_bad_chars", "panel/trafo1/volt!", b"230.45", "bad_metric_name"),
    Bad("metric_non_ascii", "panel/trafo1/tegangan_\u00e9", b"230.45", "bad_metric_name"),
    Bad("metric_too_long", "panel/trafo1/" + "m" * 65, b"230.45", "bad_metric_name"),
    Bad("bad_topic_wins_over_bad_payload", "panel/trafo1", b"NaN", "bad_topic"),
    Bad("wrong_prefix", "meter/trafo1/volt", b"230.45", "bad_topic", wire=False),
    Bad("prefix_case", "Panel/trafo1/volt", b"230.45", "bad_topic", wire=False),
    Bad("leading_slash", "/panel/trafo1/volt", b"230.45", "bad_topic", wire=False),
    Bad("wildcard_plus", "panel/+/volt", b"230.45", "bad_topic", wire=False),
    Bad("wildcard_hash", "panel/trafo1/#", b"230.45", "bad_topic", wire=False),
    Bad("nul_in_topic", "panel/tra\0fo1/volt", b"230.45", "bad_topic", wire=False),
    Bad("empty_topic", "", b"230.45", "bad_topic", wire=False),
]
