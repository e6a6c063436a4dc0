"""WebSocket ``/api/v1/live``: snapshot, then reading / status / ingest frames as JSON.

The client may send ``{"type": "subscribe", "panels": ["*"]}`` (all panels, the default) or a
list of panel ids, and ``{"type": "ping"}`` (answered with ``pong``). Protocol-level pings keep
dead sockets from piling up (uvicorn's ``ws_ping_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pelbiot.live.hub import LiveClient, LiveHub

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

_MAX_SUBSCRIBE = 10_000


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    runtime = websocket.app.state.runtime
    hub: LiveHub = runtime.hub
    principal = getattr(websocket.state, "principal", None)
    await websocket.accept()
    panels = websocket.query_params.getlist("panel") or None
    may_see = None
    if principal is not None and principal.scoped:
        directory = runtime.directory

        def may_see(panel_id: str) -> bool:
            return bool(directory.visible(principal, panel_id))

    client = hub.connect(panels, may_see=may_see)
    try:
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(_send_frames(websocket, client), name="live-send")
            watcher = group.create_task(
                _watch_credentials(websocket, runtime, principal), name="live-credentials"
            )
            await _receive_commands(websocket, hub, client)
            sender.cancel()
            watcher.cancel()
    except* WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(client)


async def _watch_credentials(websocket: WebSocket, runtime: Any, principal: Any) -> None:
    """Close the feed once its session ends (logout, account disabled) or its key is revoked."""
    if principal is None or (principal.session_id is None and principal.key_id is None):
        return  # anonymous read-only access has nothing to revoke
    while True:
        await asyncio.sleep(runtime.settings.live_session_recheck_s)
        if principal.session_id is not None:
            valid = await asyncio.to_thread(runtime.sessions.session_active, principal.session_id)
        else:
            valid = await asyncio.to_thread(runtime.api_keys.active, principal.key_id)
        if not valid:
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=1008, reason="session ended")
            return


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
            text = await websocket.receive_text()
        except WebSocketDisconnect:
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
