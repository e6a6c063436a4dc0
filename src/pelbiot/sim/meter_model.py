"""The simulated meter: a three-phase 230/400 V 50 Hz meter on a distribution transformer.

Pure: ``PanelModel.step(ts)`` advances one meter to the epoch time ``ts`` (seconds) and returns a
``Sample``; nothing here reads a clock or does I/O, so tests step it with a fake clock.
``pelbiot.sim.simulator`` drives it on a schedule and publishes over MQTT.

What a meter reports: per-phase voltage (230 V nominal, dropping with load, a little higher at
night), current following a daily load curve in the site time zone (night base, morning ramp,
evening peak 17:00-22:00), power, power factor, reactive and apparent power, the neutral current
(phase imbalance plus triplen harmonics), line voltages, grid frequency around 50 Hz, top-oil
temperature lagging the load (IEC 60076-7 first-order model) and a cumulative kWh counter that
is the trapezoid integral of total power between readings (plus the cost of that energy).

Events start with a chance per reading while the same event is not already running: a sag (one
or all phases at 60-88 % of nominal, 0.5-8 s), a swell (111-118 %, 0.5-8 s), an overload (105-150 %
of the rating, 1-10 min) and a dropout (the meter goes silent for 20-240 s but keeps counting).

Panel sizes, imbalance and the like come from a seed (0 when unset), so ``trafo1..N`` are the
same panels on every run. A counter starts from the expected consumption since 2024-01-01, so a
restarted simulator continues its counters (give or take minutes of noise) instead of resetting.
"""

from __future__ import annotations

import cmath
import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import orjson

NOMINAL_V = 230.0
SQRT3 = math.sqrt(3.0)
EVENTS = ("sag", "swell", "overload", "dropout")
PLN_TARIFF_RP_PER_KWH = 1444.70  # PLN R-1 / B-2 (above 1,300 VA), Rupiah per kWh
_SIZES_KVA = (100, 160, 200, 250, 315, 400, 630, 1000)
_ANGLES = (0.0, -2 * math.pi / 3, 2 * math.pi / 3)
# Load as a fraction of the daily peak by local hour: night base, morning ramp, midday plateau,
# evening peak (PLN's WBP, 17:00-22:00). Piecewise linear.
_CURVE = (
    (0.0, 0.42), (4.0, 0.36), (5.0, 0.38), (6.5, 0.55), (8.0, 0.66), (11.0, 0.72),
    (12.5, 0.67), (14.0, 0.70), (16.0, 0.74), (17.0, 0.84), (18.5, 0.97), (19.5, 1.0),
    (21.0, 0.95), (22.0, 0.80), (23.0, 0.60), (24.0, 0.42),
)  # fmt: skip
_DAY_FACTOR = (1.0, 1.0, 1.0, 1.0, 1.0, 0.93, 0.86)  # Monday .. Sunday
_REFERENCE = datetime(2024, 1, 1)  # a Monday (local time)
_WEEK_MIN = 7 * 24 * 60


def curve(hour: float) -> float:
    """Daily load shape (1.0 = evening peak) at a local hour in [0, 24]."""
    for (h0, v0), (h1, v1) in pairwise(_CURVE):
        if hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return _CURVE[-1][1]


@functools.lru_cache(maxsize=64)
def local_clock(ts: float, zone: ZoneInfo) -> tuple[float, int]:
    """(local hour as a float, weekday 0=Monday) of an epoch time in the site zone."""
    moment = datetime.fromtimestamp(ts, zone)
    hour = moment.hour + moment.minute / 60 + (moment.second + moment.microsecond / 1e6) / 3600
    return hour, moment.weekday()


def load_shape(ts: float, zone: ZoneInfo) -> float:
    """The daily curve times the weekday factor (weekends are lighter)."""
    hour, weekday = local_clock(ts, zone)
    return curve(hour) * _DAY_FACTOR[weekday]


def _shape_at_minute(minute: int) -> float:
    return curve((minute % 1440) / 60) * _DAY_FACTOR[(minute // 1440) % 7]


@functools.cache
def _week_table() -> tuple[float, ...]:
    """Cumulative integral of the load shape in hours, per minute of a week from Monday 00:00."""
    out = [0.0]
    for m in range(1, _WEEK_MIN + 1):
        out.append(out[-1] + (_shape_at_minute(m - 1) + _shape_at_minute(m)) / 120)
    return tuple(out)


def expected_load_hours(ts: float, zone: ZoneInfo) -> float:
    """Integral of the load shape (hours) from the reference Monday to ``ts``."""
    minutes = max(0.0, (ts - _REFERENCE.replace(tzinfo=zone).timestamp()) / 60)
    weeks, rest = divmod(minutes, _WEEK_MIN)
    table = _week_table()
    i = min(int(rest), _WEEK_MIN - 1)
    return weeks * table[-1] + table[i] + (table[i + 1] - table[i]) * (rest - i)


def frequency_at(ts: float) -> float:
    """Grid frequency: the same slow swings for every meter on the grid (within 50 +- 0.08 Hz)."""
    return (
        50.0
        + 0.040 * math.sin(2 * math.pi * ts / 900.0)
        + 0.022 * math.sin(2 * math.pi * ts / 131.0 + 1.3)
        + 0.010 * math.sin(2 * math.pi * ts / 37.0 + 0.4)
    )


def ambient_at(hour: float) -> float:
    """Air temperature at a Javanese substation: 25.5 degC at 02:00, 32.5 degC at 14:00."""
    return 29.0 + 3.5 * math.cos(2 * math.pi * (hour - 14.0) / 24.0)


def steady_oil_rise(load: float, rated_rise: float, loss_ratio: float = 5.0) -> float:
    """IEC 60076-7 steady-state top-oil rise (K) at ``load`` times the rating (ONAN, x=0.8)."""
    return rated_rise * math.pow((load * load * loss_ratio + 1) / (loss_ratio + 1), 0.8)


def _ou(rng: random.Random, x: float, dt: float, tau: float, sigma: float) -> float:
    """Exact Ornstein-Uhlenbeck step: mean-reverting noise whatever ``dt`` is."""
    decay = math.exp(-dt / tau)
    return x * decay + sigma * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0)


@dataclass(frozen=True, slots=True)
class PanelSpec:
    panel_id: str
    rated_kva: float
    peak_load: float  # evening peak as a fraction of the rating
    power_factor: float
    tap: float  # secondary voltage offset from 230 V, as a fraction
    imbalance: tuple[float, float, float]  # share of the mean phase current, mean 1
    pf_skew: tuple[float, float, float]
    triplen: float  # third-harmonic share of phase current (adds up in the neutral)
    thermal_tau_s: float  # top-oil time constant
    rated_rise: float  # top-oil rise at rated load, K
    commissioned_kwh: float

    @property
    def rated_current(self) -> float:
        """Rated phase current (A) at 400 V line to line."""
        return self.rated_kva * 1000 / (SQRT3 * 400.0)


def make_panels(count: int, seed: int | None = None, prefix: str = "trafo") -> list[PanelSpec]:
    """``trafo1..N`` with varied sizes; the same ``seed`` gives the same panels."""
    rng = random.Random(f"pelbiot-panels-{seed or 0}")
    specs = []
    for n in range(1, count + 1):
        kva = float(rng.choice(_SIZES_KVA))
        spread = [rng.uniform(-0.08, 0.08) for _ in range(3)]
        mean = sum(spread) / 3
        specs.append(
            PanelSpec(
                panel_id=f"{prefix}{n}",
                rated_kva=kva,
                peak_load=rng.uniform(0.6, 0.88),
                power_factor=rng.uniform(0.86, 0.95),
                tap=rng.uniform(-0.01, 0.025),
                imbalance=(1 + spread[0] - mean, 1 + spread[1] - mean, 1 + spread[2] - mean),
                pf_skew=(rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), 0.0),
                triplen=rng.uniform(0.03, 0.15),
                thermal_tau_s=(60 + 120 * min(1.0, kva / 1000)) * 60,
                rated_rise=rng.uniform(50.0, 55.0),
                commissioned_kwh=round(rng.uniform(1_000, 50_000), 1),
            )
        )
    return specs


@dataclass(slots=True)
class Sample:
    """One meter reading. ``silent`` readings are measured but not sent (a dropout)."""

    panel_id: str
    ts: float
    values: dict[str, float]
    active: frozenset[str] = frozenset()  # events running at this reading
    started: frozenset[str] = frozenset()  # events that started at this reading
    silent: bool = False


@dataclass(slots=True)
class _Event:
    until: float
    level: float
    phases: tuple[int, ...] = (0, 1, 2)


class PanelModel:
    """One meter's state. ``step`` never reads a clock; time only moves forward."""

    def __init__(
        self,
        spec: PanelSpec,
        rng: random.Random,
        start_ts: float,
        *,
        zone: ZoneInfo,
        rates: Mapping[str, float],
        tariff_rp_per_kwh: float = PLN_TARIFF_RP_PER_KWH,
    ) -> None:
        self.spec, self.rng, self.zone = spec, rng, zone
        self.rates = {kind: float(rates.get(kind, 0.0)) for kind in EVENTS}
        self.tariff = tariff_rp_per_kwh
        mean_kw = spec.rated_kva * spec.peak_load * spec.power_factor
        self.energy_kwh = spec.commissioned_kwh + mean_kw * expected_load_hours(start_ts, zone)
        self.cost_rp = self.energy_kwh * tariff_rp_per_kwh
        hour, _ = local_clock(start_ts, zone)
        load = spec.peak_load * load_shape(start_ts, zone)
        self.temperature = ambient_at(hour) + steady_oil_rise(load, spec.rated_rise)
        self.last_ts: float | None = None
        self.last_power = 0.0
        self.weather = 0.0  # slow load swing (heat, clouds, holidays), fraction
        self.drift = 0.0  # slow supply voltage swing, fraction
        self.events: dict[str, _Event] = {}

    def _events(self, ts: float) -> tuple[frozenset[str], frozenset[str]]:
        started = []
        for kind in EVENTS:
            event = self.events.get(kind)
            if event is not None and event.until <= ts:
                del self.events[kind]
                event = None
            if event is None and self.rng.random() < self.rates[kind]:
                started.append(kind)
                self.events[kind] = self._new_event(kind, ts)
        return frozenset(self.events), frozenset(started)

    def _new_event(self, kind: str, ts: float) -> _Event:
        rng = self.rng
        phases = (rng.randrange(3),) if rng.random() < 0.6 else (0, 1, 2)
        if kind == "sag":
            return _Event(ts + rng.uniform(0.5, 8.0), rng.uniform(0.6, 0.88), phases)
        if kind == "swell":
            return _Event(ts + rng.uniform(0.5, 8.0), rng.uniform(1.11, 1.18), phases)
        if kind == "overload":
            return _Event(ts + rng.uniform(60.0, 600.0), rng.uniform(1.05, 1.5))
        return _Event(ts + rng.uniform(20.0, 240.0), 0.0)  # dropout

    def step(self, ts: float) -> Sample:
        """Advance to epoch time ``ts`` (seconds) and read the meter."""
        if self.last_ts is not None and ts < self.last_ts:
            raise ValueError(f"time went backwards: {ts} < {self.last_ts}")
        spec, rand = self.spec, self.rng.random  # uniform noise: cheaper than gauss, as good here
        dt = 0.0 if self.last_ts is None else ts - self.last_ts
        active, started = self._events(ts)
        hour, weekday = local_clock(ts, self.zone)

        self.weather = _ou(self.rng, self.weather, dt, 1800.0, 0.04)
        self.drift = _ou(self.rng, self.drift, dt, 600.0, 0.004)
        load = spec.peak_load * curve(hour) * _DAY_FACTOR[weekday] * (1 + self.weather)
        if "overload" in active:
            load = max(load, self.events["overload"].level)
        load = max(0.02, load * (1 + (rand() - 0.5) * 0.041569))

        v_event = [0.0, 0.0, 0.0]  # a sag or swell sets the phase to a share of nominal
        for kind in ("swell", "sag"):  # a sag wins over a swell on the same phase
            if kind in active:
                for p in self.events[kind].phases:
                    v_event[p] = self.events[kind].level
        base_v = NOMINAL_V * (1 + spec.tap + 0.01 * math.cos(2 * math.pi * (hour - 3) / 24))
        base_v *= (1 + self.drift) * (1 - 0.035 * min(load, 1.5))
        pf_mean = spec.power_factor - 0.06 * max(0.0, 0.6 - min(load, 1.0))
        i_mean = load * spec.rated_current
        volts, amps, watts, vars_ = [0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3
        i_sum = complex(0.0)
        for p in range(3):
            v = (NOMINAL_V * v_event[p] if v_event[p] else base_v) + (rand() - 0.5) * 0.866025
            i = max(0.0, i_mean * spec.imbalance[p] * (1 + (rand() - 0.5) * 0.034641))
            pf = min(0.995, max(0.6, pf_mean + spec.pf_skew[p] + (rand() - 0.5) * 0.010392))
            volts[p], amps[p] = v, i
            watts[p], vars_[p] = v * i * pf, v * i * math.sqrt(1 - pf * pf)
            i_sum += cmath.rect(i, _ANGLES[p] - math.acos(pf))
        power = watts[0] + watts[1] + watts[2]
        apparent = volts[0] * amps[0] + volts[1] * amps[1] + volts[2] * amps[2]

        if self.last_ts is not None:
            kwh = (self.last_power + power) / 2 * dt / 3.6e6
            self.energy_kwh += kwh
            self.cost_rp += kwh * self.tariff
        target = ambient_at(hour) + steady_oil_rise(load, spec.rated_rise)
        self.temperature += (target - self.temperature) * (1 - math.exp(-dt / spec.thermal_tau_s))
        self.last_ts, self.last_power = ts, power

        v1, v2, v3 = volts
        values = {
            "voltage_l1": v1,
            "voltage_l2": v2,
            "voltage_l3": v3,
            # |Va - Vb| for phasors 120 degrees apart
            "voltage_l12": math.sqrt(v1 * v1 + v2 * v2 + v1 * v2),
            "voltage_l23": math.sqrt(v2 * v2 + v3 * v3 + v2 * v3),
            "voltage_l31": math.sqrt(v3 * v3 + v1 * v1 + v3 * v1),
            "current_l1": amps[0],
            "current_l2": amps[1],
            "current_l3": amps[2],
            "current_n": math.hypot(abs(i_sum), spec.triplen * sum(amps)),
            "power_l1": watts[0],
            "power_l2": watts[1],
            "power_l3": watts[2],
            "power": power,
            "reactive_power": vars_[0] + vars_[1] + vars_[2],
            "apparent_power": apparent,
            "power_factor": power / apparent if apparent > 0 else 1.0,
            "frequency": frequency_at(ts) + (rand() - 0.5) * 0.006928,
            "energy": self.energy_kwh,
            "energy_cost": self.cost_rp,
            "temperature": self.temperature + (rand() - 0.5) * 0.173205,
        }
        return Sample(spec.panel_id, ts, values, active, started, "dropout" in active)


_DECIMALS = {"power_factor": 3, "frequency": 3, "energy": 4}
_TELEMETRY_SKIP = frozenset({"energy_cost"})  # a meter counts kWh; cost is PELBIOT's business


def format_ts(ts: float, zone: ZoneInfo) -> str:
    """ISO 8601 in the site zone with its offset, to the millisecond."""
    return datetime.fromtimestamp(round(ts * 1000) / 1000, zone).isoformat(timespec="milliseconds")


def telemetry_payload(sample: Sample, zone: ZoneInfo, ts_text: str | None = None) -> bytes:
    """``{"ts": ..., "voltage_l1": ..., ...}`` for ``<prefix>/<panel>/telemetry``."""
    doc: dict[str, object] = {"ts": ts_text or format_ts(sample.ts, zone)}
    for name, value in sample.values.items():
        if name not in _TELEMETRY_SKIP:
            doc[name] = round(value, _DECIMALS.get(name, 2))
    return orjson.dumps(doc)


def seed_values(sample: Sample) -> dict[str, float]:
    """The original simulator's four values: mean phase voltage (V), mean phase current (A),
    total active power (W) and the accumulated energy cost (Rp)."""
    v = sample.values
    return {
        "volt": round((v["voltage_l1"] + v["voltage_l2"] + v["voltage_l3"]) / 3, 2),
        "ampere": round((v["current_l1"] + v["current_l2"] + v["current_l3"]) / 3, 2),
        "power": round(v["power"], 2),
        "energy_cost": round(v["energy_cost"], 2),
    }
