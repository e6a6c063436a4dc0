"""The live feed in tests: read frames from a test client's WebSocket until one matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

Frame = dict[str, Any]


def frames_until(
    ws: WebSocketTestSession, matches: Callable[[Frame], bool], *, limit: int = 10_000
) -> list[Frame]:
    """Every frame received up to and including the first that ``matches`` (the last one).
    Hangs are bounded by the test's timeout marker, not here: frames arrive when they arrive."""
    frames: list[Frame] = []
    for _ in range(limit):
        frame = ws.receive_json()
        frames.append(frame)
        if matches(frame):
            return frames
    raise AssertionError(f"no matching frame among {limit}: last {frames[-5:]}")


def reading_of(panel: str) -> Callable[[Frame], bool]:
    return lambda frame: frame["type"] == "reading" and frame["panel"] == panel


def panels_in(frames: list[Frame], kind: str = "reading") -> set[str]:
    return {f["panel"] for f in frames if f["type"] == kind}


def close_code(ws: WebSocketTestSession, *, limit: int = 10_000) -> tuple[int, str]:
    """Read until the server closes the socket; its (code, reason)."""
    for _ in range(limit):
        try:
            ws.receive_json()
        except WebSocketDisconnect as closed:
            return closed.code, str(closed.reason or "")
    raise AssertionError("the socket stayed open")


def readings_of_all(ws: WebSocketTestSession, panels: set[str]) -> list[Frame]:
    """Frames received until a reading of every panel in ``panels`` has come."""
    pending = set(panels)
    frames: list[Frame] = []
    while pending:
        frame = ws.receive_json()
        frames.append(frame)
        if frame["type"] == "reading":
            pending.discard(frame["panel"])
    return frames
