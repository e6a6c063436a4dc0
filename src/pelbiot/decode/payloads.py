"""Pure decoders: MQTT topic + payload bytes -> readings and rejections. No I/O, never raises.

Topics are ``<prefix>/<panel>/<metric>``; the prefix may have several levels (``pln/jkt``).
Accepted payloads (DESIGN section 3):

- per-metric topic: a plain number (``230.45``, surrounding ASCII whitespace allowed), a JSON
  number or numeric string (``"230.45"``), or ``{"value": 230.45, "ts": ...}`` (other keys of
  that object are ignored);
- ``<prefix>/<panel>/telemetry``: one JSON object, ``{"ts": ..., "voltage_l1": 231.2, ...}``.
  One level of nesting is flattened (``{"voltage": {"l1": 231}}`` is ``voltage_l1``); a
  ``"values"`` object holds metrics too and is merged with the top-level ones; the keys
  ``device``, ``device_id``, ``id``, ``panel``, ``panel_id``, ``name``, ``model``, ``serial``,
  ``type``, ``unit`` and ``units`` are metadata and skipped. Each bad value is refused on its
  own and the good ones are kept; a metric given twice (``power`` and ``power_kw``) keeps the
  first and refuses the second as ``duplicate_metric``.

Decisions, pinned by tests/test_payloads.py:

- Timestamps: the key ``ts``, ``timestamp``, ``time`` or ``t`` (any case); when several are
  present the first in that order wins. A telemetry message looks at the top level first, then
  inside ``"values"``. ``null`` or no key means arrival time. ISO 8601 (naive = site time) or
  an epoch number / all-digit string in seconds, ms, us or ns, told apart by magnitude. Stamps
  more than ``future_tolerance_ms`` ahead are ``future_timestamp``; before 2000 are
  ``old_timestamp`` (a dead RTC battery, not a reading).
- Numbers: a JSON number, or text that is ASCII, has no ``_`` (Python's ``float("1_000")``
  would take it) and no decimal comma (``230,5`` is ambiguous with thousands). ``NaN`` and
  ``Infinity`` (text or JSON literals, as Python's json module writes them) are ``non_finite``;
  a number too large for a double (``1e400``) is ``out_of_range``, like a value outside the
  metric's range. Booleans are ``wrong_type``, never 1/0.
- A key repeated inside one JSON object: the last one counts (as with every JSON parser).
- Metric names are case-insensitive, ``-`` and spaces read as ``_``; ASCII only; see
  ``metrics_catalog``.

Hot path: topic -> (panel, metric, scale, range) is cached, and a payload that ``float()``
reads into the metric's range becomes a Reading without further work.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson

from pelbiot.decode import metrics_catalog
from pelbiot.decode.payload_errors import PayloadError, rejection
from pelbiot.decode.timestamps import MIN_TS_MS, check_ts, parse_timestamp
from pelbiot.models import Decoded, Reading

TELEMETRY = "telemetry"
_TS_RANK = {"ts": 0, "timestamp": 1, "time": 2, "t": 3}
_META, _VALUES = 10, 11
_META_KEYS = ("device", "device_id", "id", "panel", "panel_id", "name", "model", "serial", "type")
# telemetry keys that are not metrics: timestamp rank, metadata, or the "values" object
_SPECIAL = {**_TS_RANK, **dict.fromkeys((*_META_KEYS, "unit", "units"), _META), "values": _VALUES}
# A panel id in a topic; also what a device may be given (security/broker_acl.py).
PANEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_TOPIC_FORBIDDEN = ("+", "#", "\0")
_BOM = b"\xef\xbb\xbf"
_UNDERSCORE = 95  # ord("_"): an int membership test on bytes is far cheaper than b"_" in ...
_SPACE = " \t\n\r\x0b\x0c"  # the ASCII whitespace that float() and bytes.strip() skip
# What float() reads, minus Python's extras: underscores, non-ASCII digits and spaces.
_NUMBER_RE = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE | re.ASCII
)


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    prefix: str = "panel"
    max_payload_bytes: int = 65_536
    future_tolerance_ms: int = 300_000
    zone: ZoneInfo = ZoneInfo("Asia/Jakarta")
    max_values: int = 1000  # metrics in one telemetry message


# -- values -----------------------------------------------------------------------------------


class _Overflow:
    """A JSON number too large for a double (``1e400``), from the lenient JSON fallback."""


_OVERFLOW = _Overflow()


def _number(raw: object) -> float:
    if isinstance(raw, bool):
        raise PayloadError("wrong_type", "value is a boolean")
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:
            raise PayloadError("out_of_range", "integer too large") from None
    elif isinstance(raw, str):
        value = _number_text(raw)
    elif raw is None:
        raise PayloadError("null_value")
    elif raw is _OVERFLOW:
        raise PayloadError("out_of_range", "number too large for a double")
    else:
        raise PayloadError("wrong_type", f"value of type {type(raw).__name__}")
    if not math.isfinite(value):
        raise PayloadError("non_finite")
    return value


def _number_text(raw: str) -> float:
    text = raw.strip(_SPACE)
    if _NUMBER_RE.fullmatch(text):
        value = float(text)
        if math.isinf(value) and "inf" not in text.lower():
            raise PayloadError("out_of_range", f"{text[:40]!r} is too large for a double")
        return value
    word = text.lower()
    if word in ("true", "false"):
        raise PayloadError("wrong_type", "value is a boolean")
    if word == "null":
        raise PayloadError("null_value")
    if not text:
        raise PayloadError("not_a_number", "empty string")
    raise PayloadError("not_a_number", f"{text[:40]!r} is not a number")


def _checked(target: metrics_catalog.Target, raw: object) -> float:
    """The value of ``raw`` in the canonical unit, range-checked. Raises PayloadError."""
    name, factor, low, high = target
    kind = type(raw)
    if kind is float or kind is int:  # what JSON gives nearly always: no further calls
        try:
            value: float = raw * factor  # type: ignore[operator]
        except OverflowError:
            raise PayloadError("out_of_range", "integer too large") from None
        if low <= value <= high:
            return value
    value = _number(raw) * factor
    if not low <= value <= high:
        raise PayloadError("out_of_range", f"{name}={value:g} outside [{low:g}, {high:g}]")
    return value


def make_reading(panel_id: str, raw_metric: str, raw_value: object, ts_ms: int) -> Reading:
    """Validate one value of one metric. Raises PayloadError."""
    target = metrics_catalog.target(raw_metric)
    if target is None:
        raise PayloadError("bad_metric_name", f"metric name {raw_metric[:40]!r} is not usable")
    return Reading(panel_id, target[0], ts_ms, _checked(target, raw_value))


# Reading(...) runs a Python-level __new__; tuple.__new__ builds the same NamedTuple at half the
# cost, which was most of the per-value time of a telemetry message. Hot paths only.
_new = tuple.__new__


# -- topics -----------------------------------------------------------------------------------


def split_topic(topic: str, prefix: str) -> tuple[str, str]:
    """(panel id, metric part) of a topic, or PayloadError."""
    cut = len(prefix)
    if topic[cut : cut + 1] != "/" or not topic.startswith(prefix):
        raise PayloadError("bad_topic", f"expected {prefix}/<panel>/<metric>")
    parts = topic[cut + 1 :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise PayloadError("bad_topic", f"expected {prefix}/<panel>/<metric>")
    if any(c in topic for c in _TOPIC_FORBIDDEN):
        raise PayloadError("bad_topic", "wildcard or NUL character in topic")
    if not PANEL_RE.fullmatch(parts[0]):
        raise PayloadError("bad_panel_id")
    return parts[0], parts[1]


# topic -> (prefix, panel id, target); a TELEMETRY target for telemetry topics
_Route = tuple[str, str, metrics_catalog.Target]
_TELEMETRY_TARGET: metrics_catalog.Target = (TELEMETRY, 1.0, 0.0, 0.0)
_ROUTES: dict[str, _Route] = {}
_ROUTES_MAX = 50_000


def _route(topic: str, prefix: str) -> _Route:
    panel_id, part = split_topic(topic, prefix)
    if part.lower() == TELEMETRY:
        target = _TELEMETRY_TARGET
    else:
        found = metrics_catalog.target(part)
        if found is None:
            raise PayloadError("bad_metric_name", f"metric name {part[:40]!r} is not usable")
        target = found
    if len(_ROUTES) >= _ROUTES_MAX:
        _ROUTES.clear()
    route = _ROUTES[topic] = (prefix, panel_id, target)
    return route


# -- decoding ---------------------------------------------------------------------------------


def decode(topic: str, payload: bytes, now_ms: int, config: DecodeConfig) -> Decoded:
    """Decode one MQTT message. Never raises: problems become rejections."""
    try:
        route = _ROUTES.get(topic)
        if route is None or route[0] != config.prefix:
            route = _route(topic, config.prefix)
        _prefix, panel_id, target = route
        if len(payload) > config.max_payload_bytes:
            raise PayloadError("too_large", f"{len(payload)} bytes > {config.max_payload_bytes}")
        if target is _TELEMETRY_TARGET:
            return _telemetry(topic, panel_id, payload, now_ms, config)
        if payload.startswith(b"{"):
            doc = _json(payload)
            return Decoded([_value_object(panel_id, target, doc, now_ms, config)])
        try:
            metric, factor, low, high = target
            value = float(payload) * factor
        except ValueError:
            pass
        else:
            # NaN and infinities fail the range test; "1_000" is refused by the slow path
            if low <= value <= high and _UNDERSCORE not in payload:
                return Decoded([_new(Reading, (panel_id, metric, now_ms, value))])
        return Decoded([_single(panel_id, target, payload, now_ms, config)])
    except PayloadError as exc:
        return Decoded([], [rejection(exc, None, topic, payload, now_ms)])
    except Exception as exc:  # a decoder bug must not stop ingest: keep it visible instead
        error = PayloadError("decode_error", f"{type(exc).__name__}: {exc}"[:200])
        return Decoded([], [rejection(error, None, topic, payload, now_ms)])


def _single(
    panel_id: str,
    target: metrics_catalog.Target,
    payload: bytes,
    now_ms: int,
    config: DecodeConfig,
) -> Reading:
    """A per-metric payload that is not a plain in-range number."""
    body = _body(payload)
    if body[:1] in (b"{", b"[", b'"'):
        doc = _json(body)
        if isinstance(doc, str):
            return Reading(panel_id, target[0], now_ms, _checked(target, doc))
        return _value_object(panel_id, target, doc, now_ms, config)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("not_utf8") from None
    return Reading(panel_id, target[0], now_ms, _checked(target, text))


def _value_object(
    panel_id: str, target: metrics_catalog.Target, doc: object, now_ms: int, config: DecodeConfig
) -> Reading:
    """``{"value": ..., "ts": ...}``."""
    if not isinstance(doc, dict):
        raise PayloadError("wrong_type", f"JSON {type(doc).__name__} where a value was expected")
    if "value" not in doc:
        raise PayloadError("no_values", 'JSON object without "value"')
    ts_ms = now_ms
    ts_raw = _ts_field(doc)
    if ts_raw is not None:
        ts_ms = parse_timestamp(ts_raw, config.zone)
        check_ts(ts_ms, now_ms, config.future_tolerance_ms)
    return _new(Reading, (panel_id, target[0], ts_ms, _checked(target, doc["value"])))


def _body(payload: bytes) -> bytes:
    body = payload.strip()
    if body.startswith(_BOM):
        body = body[len(_BOM) :].strip()
    if not body:
        raise PayloadError("empty")
    return body


def _ts_field(doc: dict[str, object]) -> object:
    """The raw timestamp of a JSON object (None: arrival time)."""
    for key in _TS_RANK:
        raw = doc.get(key)
        if raw is not None:
            return raw
    best: tuple[int, object] | None = None
    for key, raw in doc.items():
        rank = _TS_RANK.get(key.strip().lower())
        if rank is not None and raw is not None and (best is None or rank < best[0]):
            best = (rank, raw)
    return None if best is None else best[1]


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # Strict JSON failed. Python's json module writes NaN/Infinity and numbers may overflow a
    # double: read those leniently so they are refused per value with the right reason.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("not_utf8") from None
    try:
        return json.loads(
            text,
            parse_float=_lenient_float,
            parse_int=_lenient_int,
            parse_constant=float,
        )
    except (ValueError, RecursionError):
        raise PayloadError("bad_json") from None


def _lenient_float(text: str) -> object:
    value = float(text)
    return _OVERFLOW if math.isinf(value) else value


def _lenient_int(text: str) -> object:
    return int(text) if len(text) <= 400 else _OVERFLOW


class _Collected:
    """Telemetry fields sorted out: metric values to check and where the timestamp is."""

    __slots__ = ("bad", "pairs", "ts")

    def __init__(self) -> None:
        self.pairs: list[tuple[str, metrics_catalog.Target, object]] = []
        self.bad: list[tuple[str, PayloadError]] = []
        self.ts: tuple[int, object] | None = None


def _collect(fields: dict[str, object], out: _Collected, *, top: bool, limit: int) -> object:
    """Sort ``fields`` into ``out``; returns the ``values`` member (if ``top``) or None."""
    nested: object = None
    for key, raw in fields.items():
        target = metrics_catalog.target(key)
        if target is None:
            out.bad.append((key, PayloadError("bad_metric_name")))
            continue
        special = _SPECIAL.get(target[0])
        if special is None:
            if type(raw) is not dict:
                out.pairs.append((key, target, raw))
                continue
            for sub, val in raw.items():
                flat = f"{key}_{sub}"
                sub_target = metrics_catalog.target(flat)
                if sub_target is None:
                    out.bad.append((flat, PayloadError("bad_metric_name")))
                else:
                    out.pairs.append((flat, sub_target, val))
            if len(out.pairs) > limit:
                raise PayloadError("too_many_values", f"more than {limit} values")
        elif special == _VALUES:
            if top:
                nested = raw
            else:
                out.bad.append((key, PayloadError("wrong_type", '"values" inside "values"')))
        elif special < _META and raw is not None and (out.ts is None or special < out.ts[0]):
            out.ts = (special, raw)
    if len(out.pairs) + len(out.bad) > limit:
        raise PayloadError("too_many_values", f"more than {limit} values")
    return nested


# -- telemetry ----------------------------------------------------------------------------------

# A meter sends the same keys in every message. For a key layout whose members are all plain
# metrics, timestamps or metadata, the work of sorting them out (names, units, ranges, the
# timestamp key, duplicates) is done once and kept as a plan: (timestamp key or None,
# ((key, metric, factor, low, high), ...)). None marks a layout that needs the general path.
_Plan = tuple[str | None, tuple[tuple[str, str, float, float, float], ...]]
_PLANS: dict[tuple[str, ...], _Plan | None] = {}
# Bounded in layouts and in keys per layout, so senders of ever-new keys cannot grow it far
# (at most about 4,096 x 64 keys); larger objects always take the general path.
_PLANS_MAX = 4096
_PLAN_KEYS_MAX = 64
_UNPLANNED: _Plan = (None, ())  # a layout not seen yet (None: seen, no plan)


def _plan(keys: tuple[str, ...]) -> _Plan | None:
    fields: list[tuple[str, str, float, float, float]] = []
    names: set[str] = set()
    ts_key, ts_rank = None, _META
    for key in keys:
        target = metrics_catalog.target(key)
        if target is None:
            return None
        special = _SPECIAL.get(target[0])
        if special is None:
            if target[0] in names:
                return None  # duplicate_metric: the general path says which
            names.add(target[0])
            fields.append((key, *target))
        elif special == _VALUES:
            return None
        elif special < ts_rank:
            ts_key, ts_rank = key, special
    return (ts_key, tuple(fields)) if fields else None


def _planned(
    plan: _Plan, doc: dict[str, object], panel_id: str, now_ms: int, config: DecodeConfig
) -> list[Reading] | None:
    """The readings of ``doc`` by its plan, or None if anything needs a closer look (a value
    that is not a plain in-range number, a null or bad timestamp): the general path then
    decides and says why."""
    ts_key, fields = plan
    if len(fields) > config.max_values:
        return None
    ts_ms = now_ms
    if ts_key is not None:
        raw_ts = doc[ts_key]
        if type(raw_ts) is int and MIN_TS_MS <= raw_ts <= now_ms + config.future_tolerance_ms:
            ts_ms = raw_ts  # epoch ms, the usual form: parse_timestamp would say the same
        else:
            try:
                ts_ms = parse_timestamp(raw_ts, config.zone)
                check_ts(ts_ms, now_ms, config.future_tolerance_ms)
            except PayloadError:
                return None
    readings: list[Reading] = []
    try:
        for key, name, factor, low, high in fields:
            raw = doc[key]
            if type(raw) is float or type(raw) is int:
                value = raw * factor
            else:
                return None
            if low <= value <= high:  # NaN fails
                readings.append(_new(Reading, (panel_id, name, ts_ms, value)))
            else:
                return None
    except OverflowError:  # an integer too large for a double
        return None
    return readings


def _telemetry(
    topic: str, panel_id: str, payload: bytes, now_ms: int, config: DecodeConfig
) -> Decoded:
    doc = _json(payload if payload.startswith(b"{") else _body(payload))
    if type(doc) is dict and len(doc) <= _PLAN_KEYS_MAX:
        keys = tuple(doc)
        plan = _PLANS.get(keys, _UNPLANNED)
        if plan is _UNPLANNED:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            plan = _PLANS[keys] = _plan(keys)
        if plan is not None:
            readings = _planned(plan, doc, panel_id, now_ms, config)
            if readings is not None:
                return Decoded(readings)
    return _telemetry_general(topic, panel_id, payload, doc, now_ms, config)


def _telemetry_general(
    topic: str, panel_id: str, payload: bytes, doc: object, now_ms: int, config: DecodeConfig
) -> Decoded:
    """Every telemetry object: each member sorted out and checked on its own, with reasons."""
    if not isinstance(doc, dict):
        raise PayloadError("wrong_type", "telemetry must be a JSON object")
    if len(doc) > config.max_values + 8:
        raise PayloadError("too_many_values", f"{len(doc)} keys > {config.max_values}")
    found = _Collected()
    nested = _collect(doc, found, top=True, limit=config.max_values)
    if nested is not None:
        if isinstance(nested, dict):
            top_ts = found.ts
            _collect(nested, found, top=False, limit=config.max_values)
            if top_ts is not None:
                found.ts = top_ts
        else:
            found.bad.append(("values", PayloadError("wrong_type", '"values" is not an object')))
    if not found.pairs and not found.bad:
        raise PayloadError("no_values", "telemetry object holds no metrics")
    ts_ms = now_ms
    if found.ts is not None:
        ts_ms = parse_timestamp(found.ts[1], config.zone)
        check_ts(ts_ms, now_ms, config.future_tolerance_ms)
    out = Decoded()
    seen: set[str] = set()
    for key, target, raw in found.pairs:
        name = target[0]
        try:
            if name in seen:
                raise PayloadError("duplicate_metric", f"{name} given twice; the first is kept")
            seen.add(name)
            out.readings.append(_new(Reading, (panel_id, name, ts_ms, _checked(target, raw))))
        except PayloadError as exc:
            out.rejections.append(rejection(exc, key, topic, payload, now_ms))
    for key, error in found.bad:
        out.rejections.append(rejection(error, key, topic, payload, now_ms))
    return out
