"""Simulated meters (placeholder interface; full model in progress)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class SimulatorConfig:
    panels: int = 5
    interval_s: float = 2.0
    seed_topics: bool = False
    prefix: str = "panel"
    sag_rate: float = 0.002
    swell_rate: float = 0.001
    overload_rate: float = 0.001
    dropout_rate: float = 0.0005
    seed: int | None = None
    zone: ZoneInfo = ZoneInfo("Asia/Jakarta")
    qos: int = 1


async def run_simulator(config: SimulatorConfig, broker_url: str, stop: asyncio.Event) -> None:
    await stop.wait()


async def run_simulator_until_signal(
    config: SimulatorConfig, broker_url: str, duration: float | None
) -> None:
    stop = asyncio.Event()
    await run_simulator(config, broker_url, stop)
