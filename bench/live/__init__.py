"""``make bench`` (live feed): publish-to-browser-socket latency and server CPU of /api/v1/live.

One run, one machine, for each workload three scenarios in turn, each a fresh server under the
same load:

- ``baseline``: a bare fan-out server (``websockets`` + a raw MQTT 3.1.1 QoS 1 subscriber, no
  database, no coalescing): each MQTT message becomes one JSON frame broadcast to every client.
  It is the floor of broker + loopback + WebSocket on this machine at this moment;
- ``pelbiot 5 Hz``: ``python -m pelbiot serve`` with its defaults (live frames coalesced to at
  most ``PELBIOT_LIVE_MAX_RATE_HZ=5`` per panel), a fresh SQLite database;
- ``pelbiot 100 Hz``: the same with the highest rate the settings accept, so the time spent in
  the pipeline (decode, commit, hub, WebSocket) shows without the coalescing wait.

Workloads, both 1,000 readings/s by default, over 100 panels:
- ``telemetry``: each panel sends one three-phase telemetry message of 10 readings a second
  (``<prefix>/p007/telemetry`` ``{"ts": ..., "voltage_l1": ..., ...}``), as real meters do;
- ``single``: one reading per message, each panel 10 messages/s rotating over 4 metrics
  (``<prefix>/p007/voltage_l2`` ``{"value": v, "ts": ...}``): faster than the 5 Hz coalescing
  rate, so the default merges values and a value may wait for its panel's next frame.

Every scenario: a private Mosquitto with raised limits (``bench/broker.py``); N WebSocket clients
in processes of their own connect and get their snapshot; a publisher process sends paced QoS 1
messages for a warm-up then a measured window. Every value encodes its publish time (0.1 ms
resolution, wrapping every 100 s: ``200 + (t mod 100 s)``, a plausible voltage/current/power),
so each client computes, for every value it receives, ``receive time - publish time``: the
latency of that reading to the browser socket, coalescing wait included. ``frame latency`` is
``receive time - frame ts`` (the newest value of the frame). Only readings published inside the
window count. CPU is user + system time from ``/proc/<pid>/stat`` over the window, in % of one
core; ratios are PELBIOT / baseline of the same run and workload.

The clients offer permessage-deflate as browsers do. By default they are a minimal WebSocket
client (asyncio protocol, frames parsed by hand, zlib): at 50 clients x 1,000 frames/s the
``websockets`` client costs more CPU than the server under test, and on a small machine the
clients' own queueing would be measured; ``--ws-client websockets`` uses it anyway.

After the publisher stops, each client's last value of every (panel, metric) must equal the last
one published (nothing stale left on screen): a run that fails this check fails the benchmark.

``python -m bench.live [--quick]``; ``--help`` for the knobs.

Modules: ``__main__`` (the command line and the rounds), ``scenario`` (one round of one
scenario, and the rounds pooled), ``report`` (what is printed), ``latency`` (the clock in the
value, histograms), ``processes`` (starting, stopping and CPU accounting), and the processes a
round starts: ``publisher``, ``clients``, ``fanout`` (the baseline's server).
"""
