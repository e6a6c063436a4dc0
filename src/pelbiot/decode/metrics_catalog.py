"""Canonical metric names, units, aliases and plausible ranges.

Values are stored in the canonical unit. An alias may carry a scale (``power_kw`` is kilowatts,
stored as watts). Ranges are generous bounds of what a 230/400 V distribution panel or its
transformer can physically report; values outside them are sensor faults or decoding errors.
Metric names not in the catalogue are kept (flagged as unknown) with only a sanity bound
(``|value| <= 1e15``).

Names as sent are case-insensitive, surrounding spaces are dropped, and ``-`` and inner spaces
read as ``_`` (``"Voltage L1"`` is ``voltage_l1``). A usable name is ASCII, starts with a letter
and has at most 64 characters of ``a-z 0-9 _`` after that; anything else is refused as
``bad_metric_name`` (so ``"\u212aw"``, a Kelvin sign that lower-cases to ``k``, is not ``kw``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    label: str


def _m(name: str, unit: str, low: float, high: float, label: str) -> Metric:
    return Metric(name, unit, low, high, label)


_PHASES = ("l1", "l2", "l3")
_LINES = ("l12", "l23", "l31")
_MAX_A = 100_000.0
_MAX_W = 100e6

_METRICS: list[Metric] = [
    _m("voltage", "V", 0, 1000, "Voltage"),
    *[_m(f"voltage_{p}", "V", 0, 1000, f"Voltage {p.upper()}-N") for p in _PHASES],
    *[_m(f"voltage_{p}", "V", 0, 1500, f"Voltage L{p[1]}-L{p[2]}") for p in _LINES],
    _m("current", "A", 0, _MAX_A, "Current"),
    *[_m(f"current_{p}", "A", 0, _MAX_A, f"Current {p.upper()}") for p in _PHASES],
    _m("current_n", "A", 0, _MAX_A, "Neutral current"),
    _m("power", "W", -_MAX_W, _MAX_W, "Active power"),
    *[_m(f"power_{p}", "W", -_MAX_W, _MAX_W, f"Active power {p.upper()}") for p in _PHASES],
    _m("reactive_power", "var", -_MAX_W, _MAX_W, "Reactive power"),
    _m("apparent_power", "VA", 0, _MAX_W, "Apparent power"),
    _m("power_factor", "", -1, 1, "Power factor"),
    *[_m(f"power_factor_{p}", "", -1, 1, f"Power factor {p.upper()}") for p in _PHASES],
    _m("frequency", "Hz", 40, 70, "Frequency"),
    _m("energy", "kWh", 0, 1e12, "Energy (import counter)"),
    _m("energy_export", "kWh", 0, 1e12, "Energy (export counter)"),
    _m("energy_cost", "Rp", 0, 1e15, "Energy cost"),
    _m("temperature", "degC", -40, 250, "Transformer temperature"),
    _m("oil_temperature", "degC", -40, 250, "Transformer oil temperature"),
    _m("winding_temperature", "degC", -40, 250, "Transformer winding temperature"),
    _m("thd_voltage", "%", 0, 100, "Voltage THD"),
    _m("thd_current", "%", 0, 1000, "Current THD"),
    # weather station
    _m("ambient_temperature", "degC", -40, 70, "Ambient temperature"),
    _m("humidity", "%", 0, 100, "Relative humidity"),
    _m("irradiance", "W/m2", 0, 2000, "Solar irradiance"),
    _m("wind_speed", "m/s", 0, 100, "Wind speed"),
    _m("rainfall", "mm", 0, 1000, "Rainfall"),
    _m("pressure", "hPa", 300, 1200, "Air pressure"),
]

CATALOG: dict[str, Metric] = {m.name: m for m in _METRICS}

# alias -> (canonical name, factor to the canonical unit)
_ALIASES: dict[str, tuple[str, float]] = {
    "volt": ("voltage", 1.0),
    "volts": ("voltage", 1.0),
    "v": ("voltage", 1.0),
    "ampere": ("current", 1.0),
    "amp": ("current", 1.0),
    "amps": ("current", 1.0),
    "a": ("current", 1.0),
    "watt": ("power", 1.0),
    "p": ("power", 1.0),
    "power_kw": ("power", 1000.0),
    "kw": ("power", 1000.0),
    "kwh": ("energy", 1.0),
    "energy_kwh": ("energy", 1.0),
    "energy_wh": ("energy", 0.001),
    "pf": ("power_factor", 1.0),
    "freq": ("frequency", 1.0),
    "hz": ("frequency", 1.0),
    "temp": ("temperature", 1.0),
    "var": ("reactive_power", 1.0),
    "va": ("apparent_power", 1.0),
    "cost": ("energy_cost", 1.0),
    "kvar": ("reactive_power", 1000.0),
    "reactive_power_kvar": ("reactive_power", 1000.0),
    "kva": ("apparent_power", 1000.0),
    "apparent_power_kva": ("apparent_power", 1000.0),
    "wh": ("energy", 0.001),
    "cos_phi": ("power_factor", 1.0),
    "cosphi": ("power_factor", 1.0),
    "current_neutral": ("current_n", 1.0),
    "temperature_oil": ("oil_temperature", 1.0),
    "temperature_winding": ("winding_temperature", 1.0),
}
for _i, _p in enumerate(_PHASES, start=1):
    _ALIASES[f"v{_i}"] = (f"voltage_{_p}", 1.0)
    _ALIASES[f"volt_{_p}"] = (f"voltage_{_p}", 1.0)
    _ALIASES[f"i{_i}"] = (f"current_{_p}", 1.0)
    _ALIASES[f"ampere_{_p}"] = (f"current_{_p}", 1.0)
    _ALIASES[f"p{_i}"] = (f"power_{_p}", 1.0)
    _ALIASES[f"pf{_i}"] = (f"power_factor_{_p}", 1.0)
for _l in _LINES:
    _ALIASES[f"v{_l[1:]}"] = (f"voltage_{_l}", 1.0)
    _ALIASES[f"volt_{_l}"] = (f"voltage_{_l}", 1.0)

UNKNOWN_BOUND = 1e15

METRIC_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# (canonical name, factor to the canonical unit, low, high): all a decoder needs to check a value
Target = tuple[str, float, float, float]

# Caches of raw name -> resolution; bounded so that a flood of junk names cannot grow them.
_RESOLVED: dict[str, tuple[str, float, Metric | None] | None] = {}
_TARGETS: dict[str, Target | None] = {}
_CACHE_MAX = 4096


def resolve(raw: str) -> tuple[str, float, Metric | None] | None:
    """Map a metric name as sent to (canonical name, scale, catalogue entry or None if unknown).

    Returns None when the name is not a usable metric name at all.
    """
    hit = _RESOLVED.get(raw)
    if hit is not None or raw in _RESOLVED:
        return hit
    result = _resolve_uncached(raw)
    if len(_RESOLVED) < _CACHE_MAX:
        _RESOLVED[raw] = result
    return result


def target(raw: str) -> Target | None:
    """(canonical name, scale, low, high) of a metric name as sent; None if not usable.

    Unknown names get the sanity bound ``[-UNKNOWN_BOUND, UNKNOWN_BOUND]``.
    """
    hit = _TARGETS.get(raw)
    if hit is not None or raw in _TARGETS:
        return hit
    resolved = _resolve_uncached(raw)
    result: Target | None = None
    if resolved is not None:
        name, factor, entry = resolved
        if entry is None:
            result = (name, factor, -UNKNOWN_BOUND, UNKNOWN_BOUND)
        else:
            result = (name, factor, entry.low, entry.high)
    if len(_TARGETS) < _CACHE_MAX:
        _TARGETS[raw] = result
    return result


def _resolve_uncached(raw: str) -> tuple[str, float, Metric | None] | None:
    if not raw.isascii():
        return None
    name = raw.strip().lower().replace("-", "_").replace(" ", "_")
    if name in CATALOG:
        return name, 1.0, CATALOG[name]
    if name in _ALIASES:
        canonical, factor = _ALIASES[name]
        return canonical, factor, CATALOG[canonical]
    if METRIC_NAME_RE.fullmatch(name):
        return name, 1.0, None
    return None


def unit_of(metric: str) -> str | None:
    entry = CATALOG.get(metric)
    return entry.unit if entry else None


def aliases() -> dict[str, str]:
    """Alias -> canonical name, for documentation and the API."""
    return {alias: target for alias, (target, _f) in sorted(_ALIASES.items())}
