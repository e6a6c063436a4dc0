"""Does the broker keep to a consumer's in-flight window? ``python -m bench.window``.

A paho MQTT 5 consumer connects with a small receive-maximum and acknowledges by hand: first
never (how many messages does the broker send before it must wait?), then every 50 ms (how many
unacknowledged messages does it ever hold?), for a backlog queued while it was away and for
messages published while it is connected. With a broker that keeps to the window both numbers
are the receive-maximum. The result decides what bounds PELBIOT's memory: the window, or the
writer queue (which stops reading the socket when full, so TCP pushes back on the broker).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.broker import PrivateMosquitto
from bench.load import publish_backlog
from bench.messages import Workload


def probe(broker: PrivateMosquitto, window: int, *, live: bool, ack: bool, count: int) -> int:
    """The most unacknowledged messages the consumer held at once."""
    pending: list[int] = []
    most = [0]
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"window-{live}-{ack}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        pending.append(msg.mid)
        most[0] = max(most[0], len(pending))

    def connect() -> None:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = window
        props.SessionExpiryInterval = 600
        client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)

    prefix = f"w{int(live)}{int(ack)}"
    client.on_message = on_message
    connect()
    client.subscribe(f"{prefix}/#", qos=1)
    for _ in range(10):
        client.loop(0.05)
    workload = Workload("single", count, prefix)
    publisher = None
    if live:
        publisher = threading.Thread(target=publish_backlog, args=(broker.port, workload))
        publisher.start()
    else:
        client.disconnect()
        client.loop(0.1)
        publish_backlog(broker.port, workload)
        connect()
    started = last_ack = time.monotonic()
    while time.monotonic() - started < 3:
        client.loop(0.01)
        if ack and time.monotonic() - last_ack > 0.05:
            for mid in pending:
                client.ack(mid, 1)
            pending.clear()
            last_ack = time.monotonic()
    client.disconnect()
    client.loop(0.1)
    if publisher is not None:
        publisher.join()
    return most[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.window", description=__doc__)
    parser.add_argument("--receive-maximum", type=int, default=5)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--broker-inflight", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pelbiot-window-") as tmp:
        broker = PrivateMosquitto(
            Path(tmp), max_queued=args.count * 4, max_inflight=args.broker_inflight
        )
        with broker:
            print(f"receive-maximum {args.receive_maximum}, {args.count} messages:")
            for live in (False, True):
                for ack in (False, True):
                    most = probe(broker, args.receive_maximum, live=live, ack=ack, count=args.count)
                    when = "published while connected" if live else "queued while away"
                    how = "acked every 50 ms" if ack else "never acked"
                    print(f"  {when:26} {how:18} most unacknowledged at once: {most}")


if __name__ == "__main__":
    main()
