"""A load generator that keeps its own in-flight window.

paho silently loses messages once more than 65,535 are awaiting acknowledgement, so we never have
more than ``window`` QoS 1 publishes outstanding. paho resends whatever was not acknowledged when
the broker went away (the broker may then hold duplicates; the unique key absorbs them).

Locking: paho runs ``on_publish`` while holding its own message mutex, and ``publish`` takes that
mutex, so ``client.publish`` must never be called while holding our lock (lock-order deadlock:
the network thread stops, the broker drops us for a missed keepalive). A PUBACK may therefore
arrive before we have recorded the mid; ``_early`` remembers it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class WindowedPublisher:
    def __init__(self, host: str, port: int, *, client_id: str, window: int = 1000) -> None:
        self._host, self._port = host, port
        self._window = threading.Semaphore(window)
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[str, bytes]] = {}
        self._early: set[int] = set()  # acknowledged before publish_all recorded the mid
        self._connected = threading.Event()
        self.acked = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.1, 1.0)
        client.on_publish = self._on_publish
        client.on_connect = lambda *_a: self._connected.set()
        client.on_disconnect = lambda *_a: self._connected.clear()
        self._client = client

    def __enter__(self) -> WindowedPublisher:
        self._client.connect_async(self._host, self._port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("publisher could not connect")
        return self

    def __exit__(self, *_exc: object) -> None:
        # Loop first, then DISCONNECT (written directly): the other order leaves paho's loop
        # thread one turn on a closed socket, which it logs as an error.
        self._client.loop_stop()
        self._client.disconnect()

    def _on_publish(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self._lock:
            if self._pending.pop(mid, None) is not None:
                self.acked += 1
                self._window.release()
            else:
                self._early.add(mid)

    def publish_all(self, messages: Iterable[tuple[str, bytes]], *, timeout: float = 120) -> None:
        """Publish every message at QoS 1 and wait until each is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        for topic, payload in messages:
            while not self._window.acquire(timeout=0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError("publisher window never opened")
            while not self._connected.wait(0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError("publisher could not reconnect")
            info = self._client.publish(topic, payload, qos=1)  # not under self._lock
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self.acked += 1
                    self._window.release()
                else:
                    self._pending[info.mid] = (topic, payload)
        while True:
            with self._lock:
                if not self._pending:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._pending)} publishes never acknowledged")
            time.sleep(0.05)
