"""WebSocket ``/api/v1/live``: snapshot, then reading / status / ingest frames as JSON.

The client may send ``{"type": "subscribe", "panels": ["*"]}`` (all panels, the default) or a
list of panel ids, and ``{"type": "ping"}`` (answered with ``pong``), as text frames; a binary
frame closes the socket with 1003. Protocol-level pings keep dead sockets from piling up
(uvicorn's ``ws_ping_interval``). Credentials: see ``api/deps.identify``; the rights are kept
current while the socket is open by ``api/live_access``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pelbiot.api.live_access import open_access, watch_access
from pelbiot.live.hub import LiveClient, LiveHub

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

_MAX_SUBSCRIBE = 10_000
SUBPROTOCOL = "pelbiot.v1"
_UNSUPPORTED_DATA = 1003
_TRY_AGAIN_LATER = 1013
_BINARY_REFUSED = "binary frames are not supported; send JSON text frames"


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    runtime = websocket.app.state.runtime
    hub: LiveHub = runtime.hub
    principal = getattr(websocket.state, "principal", None)
    # Browsers that cannot send headers offer ["pelbiot.v1", "bearer.<token>"]; the handshake
    # must then select one of the offered protocols, and never the one carrying the secret.
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        # What a scoped caller may see is computed here, off the event loop; hub ticks only
        # test membership (a tick must never wait on the database). A change committed while
        # it is computed is after ``seen``: the watcher re-checks at once.
        access, seen = await open_access(runtime, principal)
    except Exception:
        logger.warning("live feed: rights lookup failed at connect", exc_info=True)
        await websocket.close(code=_TRY_AGAIN_LATER, reason="try again later")
        return
    panels = websocket.query_params.getlist("panel") or None
    client = hub.connect(panels, visible=access.visible)
    try:
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(_send_frames(websocket, client), name="live-send")
            watcher = group.create_task(
                watch_access(websocket, runtime, client, access, seen), name="live-access"
            )
            await _receive_commands(websocket, hub, client)
            sender.cancel()
            watcher.cancel()
    except* WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(client)


async def _send_frames(websocket: WebSocket, client: LiveClient) -> None:
    while True:
        frame = await client.frames.get()
        try:
            await websocket.send_text(orjson.dumps(frame).decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the receive side sees the disconnect and ends the session


async def _receive_commands(websocket: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return  # RuntimeError: the socket was closed by us (session ended)
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            # A binary frame: commands are JSON text. 1003 = "unsupported data" (RFC 6455).
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=_UNSUPPORTED_DATA, reason=_BINARY_REFUSED)
            return
        try:
            command: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            hub.send(client, _error("message is not JSON"))
            continue
        kind = command.get("type") if isinstance(command, dict) else None
        if kind == "ping":
            hub.send(client, {"type": "pong"})
        elif kind == "subscribe":
            panels = command.get("panels", ["*"])
            if (
                not isinstance(panels, list)
                or len(panels) > _MAX_SUBSCRIBE
                or not all(isinstance(p, str) for p in panels)
            ):
                hub.send(client, _error("panels must be a list of panel ids or ['*']"))
                continue
            hub.subscribe(client, panels)
        else:
            hub.send(client, _error("unknown message type; expected subscribe or ping"))


def _error(message: str) -> dict[str, str]:
    return {"type": "error", "message": message}
