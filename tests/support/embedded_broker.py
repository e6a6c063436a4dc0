"""The embedded (amqtt) broker on a loop of its own, for tests that drive it from threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pelbiot.ingest.broker import EmbeddedBroker, free_port
from pelbiot.ingest.broker_auth import BrokerGate


@contextmanager
def embedded_broker(gate: BrokerGate | None) -> Iterator[EmbeddedBroker]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="embedded-broker", daemon=True)
    thread.start()
    broker = EmbeddedBroker("127.0.0.1", free_port(), gate=gate)
    try:
        asyncio.run_coroutine_threadsafe(broker.__aenter__(), loop).result(10)
        try:
            yield broker
        finally:
            asyncio.run_coroutine_threadsafe(broker.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
