"""The metric catalogue: canonical names, aliases with their scale, ranges, name rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelbiot.decode import metrics_catalog as mc
from pelbiot.decode.payloads import _SPECIAL

DESIGN_METRICS = [
    "voltage",
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "voltage_l12",
    "voltage_l23",
    "voltage_l31",
    "current",
    "current_l1",
    "current_l2",
    "current_l3",
    "current_n",
    "power",
    "power_l1",
    "power_l2",
    "power_l3",
    "reactive_power",
    "apparent_power",
    "power_factor",
    "frequency",
    "energy",
    "energy_export",
    "energy_cost",
    "temperature",
]


@pytest.mark.parametrize("name", DESIGN_METRICS)
def test_every_metric_of_the_design_is_catalogued(name: str) -> None:
    assert name in mc.CATALOG
    assert mc.resolve(name) == (name, 1.0, mc.CATALOG[name])


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("voltage", "V"),
        ("current", "A"),
        ("power", "W"),
        ("reactive_power", "var"),
        ("apparent_power", "VA"),
        ("power_factor", ""),
        ("frequency", "Hz"),
        ("energy", "kWh"),
        ("energy_cost", "Rp"),
        ("temperature", "degC"),
    ],
)
def test_units_are_si_as_the_design_says(name: str, unit: str) -> None:
    assert mc.unit_of(name) == unit


def test_unit_of_an_unknown_metric_is_none() -> None:
    assert mc.unit_of("rssi") is None


@pytest.mark.parametrize(
    ("alias", "canonical", "factor"),
    [
        ("volt", "voltage", 1.0),  # seed topic
        ("ampere", "current", 1.0),  # seed topic
        ("energy_cost", "energy_cost", 1.0),  # seed topic, stays as it is
        ("power", "power", 1.0),  # seed topic
        ("V1", "voltage_l1", 1.0),
        ("v12", "voltage_l12", 1.0),
        ("I3", "current_l3", 1.0),
        ("kW", "power", 1000.0),
        ("power_kw", "power", 1000.0),
        ("kvar", "reactive_power", 1000.0),
        ("kVA", "apparent_power", 1000.0),
        ("kWh", "energy", 1.0),
        ("energy_wh", "energy", 0.001),
        ("PF", "power_factor", 1.0),
        ("cos-phi", "power_factor", 1.0),
        ("Hz", "frequency", 1.0),
        ("temperature_oil", "oil_temperature", 1.0),
    ],
)
def test_aliases_map_to_canonical_names_with_their_scale(
    alias: str, canonical: str, factor: float
) -> None:
    resolved = mc.resolve(alias)
    assert resolved is not None
    assert resolved[:2] == (canonical, factor)
    assert resolved[2] is mc.CATALOG[canonical]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Voltage_L1", "voltage_l1"),
        ("VOLTAGE-L1", "voltage_l1"),
        ("Voltage L1", "voltage_l1"),
        ("  voltage_l1  ", "voltage_l1"),
        ("rssi", "rssi"),  # unknown but usable: kept and flagged
        ("harmonic_5_l1", "harmonic_5_l1"),
        ("x" * 64, "x" * 64),
    ],
)
def test_names_are_normalised(raw: str, canonical: str) -> None:
    resolved = mc.resolve(raw)
    assert resolved is not None
    assert resolved[0] == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "1phase",  # starts with a digit
        "_voltage",
        "volt!",
        "voltage.l1",
        "voltage[0]",
        "teg\u00e1ngan",  # non-ASCII
        "\u212aw",  # KELVIN SIGN lower-cases to "k": must not become kW
        "x" * 65,  # longer than the series column
        "vo\nlt",
        "a\nb",
    ],
)
def test_unusable_names_resolve_to_none(raw: str) -> None:
    assert mc.resolve(raw) is None
    assert mc.target(raw) is None


def test_catalogue_is_consistent() -> None:
    for name, metric in mc.CATALOG.items():
        assert metric.name == name
        assert mc.METRIC_NAME_RE.fullmatch(name), name
        assert metric.low < metric.high
        assert metric.label
    aliases = mc.aliases()
    for alias, target in aliases.items():
        assert target in mc.CATALOG, alias
        assert alias not in mc.CATALOG, f"alias {alias} shadows a canonical name"
        assert mc.METRIC_NAME_RE.fullmatch(alias), alias


def test_no_metric_or_alias_is_a_reserved_telemetry_key() -> None:
    # ts / timestamp / device / values ... in a telemetry object are never metrics
    for name in [*mc.CATALOG, *mc.aliases()]:
        assert name not in _SPECIAL, name


def test_labels_of_line_voltages() -> None:
    assert mc.CATALOG["voltage_l12"].label == "Voltage L1-L2"
    assert mc.CATALOG["voltage_l31"].label == "Voltage L3-L1"


def test_target_carries_the_range_or_the_unknown_bound() -> None:
    assert mc.target("volt") == ("voltage", 1.0, 0, 1000)
    assert mc.target("kW") == ("power", 1000.0, -100e6, 100e6)
    assert mc.target("rssi") == ("rssi", 1.0, -mc.UNKNOWN_BOUND, mc.UNKNOWN_BOUND)


def test_caches_are_bounded() -> None:
    for i in range(mc._CACHE_MAX + 100):
        mc.resolve(f"junk_{i}")
        mc.target(f"junk_{i}!")
    assert len(mc._RESOLVED) <= mc._CACHE_MAX
    assert len(mc._TARGETS) <= mc._CACHE_MAX
    assert mc.resolve("volt") == ("voltage", 1.0, mc.CATALOG["voltage"])  # still right uncached


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_resolve_never_raises_and_agrees_with_target(raw: str) -> None:
    resolved = mc.resolve(raw)
    target = mc.target(raw)
    if resolved is None:
        assert target is None
        return
    assert target is not None
    name, factor, entry = resolved
    assert target[:2] == (name, factor)
    assert mc.METRIC_NAME_RE.fullmatch(name)
    assert name.isascii()
    if entry is not None:
        assert target[2:] == (entry.low, entry.high)
