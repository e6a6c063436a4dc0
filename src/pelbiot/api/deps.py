"""Shared dependencies: the runtime, and the single authorization hook for every API route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from pelbiot.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def authorize(connection: HTTPConnection) -> None:
    """The one place access is decided. Accounts and API keys plug in here (issue #5)."""
    return None
