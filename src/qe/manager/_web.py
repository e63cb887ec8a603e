"""The manager page's HTTP surface (Starlette): the page, JSON for blocks and ``evox``, jobs
with live progress and live log tails as server-sent events.

Only loopback clients are served: the server binds 127.0.0.1, refuses other Host headers
(DNS rebinding) and wants an ``X-QE-Manager`` header on every change (a foreign web page
cannot add it without a CORS preflight, which is never granted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._errors import QEError
from ._blocks import Block, discover_blocks, open_in_vscode
from ._env import Evox
from ._errors import BlockError, EnvError
from ._jobs import Jobs
from ._link import NexusLink
from ._logs import tail_lines
from ._pip import Progress
from ._runs import block_log, block_state, start_block, stop_block, wait_started

__all__ = ["Manager", "create_app"]

CHANGE_HEADER = "x-qe-manager"
LOG_LINES = 200
LOG_POLL = 0.25
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


@dataclass
class Manager:
    """What the page manages: one project folder and one ``evox``."""

    project: Path
    evox: Evox
    port: int = 0
    jobs: Jobs = field(default_factory=Jobs)
    link: NexusLink = field(default_factory=NexusLink)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def block(self, name: str) -> Block:
        for block in discover_blocks(self.project):
            if block.name == name:
                return block
        raise BlockError(f"no block {name!r} in {self.project}")

    async def aclose(self) -> None:
        self.closing.set()
        await self.jobs.aclose()
        await self.link.close()


def _static(name: str) -> bytes:
    return (resources.files("qe.manager") / "_static" / name).read_bytes()


def _error(exc: QEError, status: int = 400) -> JSONResponse:
    return JSONResponse(exc.to_wire(), status_code=status)


def _sse(events: AsyncIterator[tuple[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for event, data in events:
            yield f"event: {event}\ndata: {json.dumps(data)}\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _snapshot(manager: Manager) -> list[dict[str, Any]]:
    """Blocks and their runs (file reads and pid checks: run in a thread)."""
    now = time.time()
    out = []
    for block in discover_blocks(manager.project):
        state = block_state(block)
        item = {
            "name": block.name,
            "folder": str(block.folder),
            "app": block.app,
            "resource": block.resource,
            "runnable": block.runnable,
            "run": state.as_dict(),
            "uptime": state.uptime(now),
            "last_lines": tail_lines(block_log(block), 8) if state.status.value == "crashed" else [],
        }
        out.append(item)
    return out


def create_app(manager: Manager) -> Starlette:
    async def page(_request: Request) -> Response:
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response(status_code=404)
        return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-store"})

    async def state(_request: Request) -> Response:
        blocks = await asyncio.to_thread(_snapshot, manager)
        apps = sorted({b["app"] for b in blocks})
        found = await asyncio.gather(*(manager.link.find(app) for app in apps))
        online = dict(zip(apps, found, strict=True))
        nexus_ok = all(v is not None for v in found) if apps else None
        for b in blocks:
            listed = online.get(b["app"]) or []
            mine = [x for x in listed if b["run"]["status"] == "running" and _same_worker(x, b["run"]["pid"])]
            b["online"] = bool(mine)
            b["jid"] = mine[0]["jid"] if mine else None
            b["online_elsewhere"] = [x["jid"] for x in listed if x not in mine]
        return JSONResponse(
            {
                "project": str(manager.project),
                "nexus": {"url": manager.link.url, "reachable": nexus_ok},
                "evox": {"name": manager.evox.name, "location": str(manager.evox.location)},
                "blocks": blocks,
            }
        )

    async def env_status(_request: Request) -> Response:
        try:
            status = await asyncio.to_thread(manager.evox.status)
        except EnvError as exc:
            return _error(exc)
        return JSONResponse(status.as_dict())

    def job_response(title: str, work: Callable[[Progress], Any]) -> Response:
        job = manager.jobs.start(title, work)
        return JSONResponse({"job": job.id, "title": job.title}, status_code=202)

    async def env_create(_request: Request) -> Response:
        return job_response(f"create {manager.evox.name}", lambda say: _ensure(manager.evox, say))

    async def env_install(request: Request) -> Response:
        body = await request.json()
        packages = str(body.get("packages", "")).split()
        if not packages:
            return _error(EnvError("name at least one package to install (pip syntax, e.g. pillow)"))
        return job_response(f"pip install {' '.join(packages)}", lambda say: _install(manager.evox, packages, say))

    async def block_action(request: Request) -> Response:
        try:
            block = manager.block(request.path_params["name"])
        except BlockError as exc:
            return _error(exc, 404)
        action = request.path_params["action"]
        if action == "start":
            return job_response(f"start {block.name}", lambda say: _start(block, manager.evox, say))
        if action == "stop":
            return job_response(f"stop {block.name}", lambda say: _stop(block, say))
        if action == "open":
            try:
                await asyncio.to_thread(open_in_vscode, block.folder)
            except BlockError as exc:
                return _error(exc)
            return JSONResponse({"code": 0, "opened": str(block.folder)})
        if action == "ping":
            run = await asyncio.to_thread(block_state, block)
            listed = await manager.link.find(block.app) if run.active else None
            jid = next((x["jid"] for x in listed or [] if _same_worker(x, run.pid)), None)
            reply = await manager.link.ping(block.app, jid)
            return JSONResponse({"target": jid or block.app, "reply": reply})
        return Response(status_code=404)

    async def job_events(request: Request) -> Response:
        job = manager.jobs.get(request.path_params["job"])
        if job is None:
            return _error(QEError("no such job"), 404)

        async def events() -> AsyncIterator[tuple[str, Any]]:
            async for line in job.follow():
                yield "line", line
            yield "done", job.as_dict()

        return _sse(events())

    async def log_events(request: Request) -> Response:
        try:
            block = manager.block(request.path_params["name"])
        except BlockError as exc:
            return _error(exc, 404)
        return _sse(_follow_log(block_log(block), manager.closing))

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/state", state),
        Route("/api/env", env_status),
        Route("/api/env/create", env_create, methods=["POST"]),
        Route("/api/env/install", env_install, methods=["POST"]),
        Route("/api/blocks/{name}/log", log_events),
        Route("/api/blocks/{name}/{action}", block_action, methods=["POST"]),
        Route("/api/jobs/{job}", job_events),
    ]
    return Starlette(routes=routes)


class LoopbackOnly:
    """ASGI middleware: serve loopback Host headers only; changes need the X-QE-Manager header."""

    def __init__(self, app: ASGIApp, port: Callable[[], int]) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            allowed = {f"127.0.0.1:{self.port()}", f"localhost:{self.port()}"}
            refused = headers.get("host") not in allowed or (
                scope["method"] not in {"GET", "HEAD"} and headers.get(CHANGE_HEADER) != "1"
            )
            if refused:
                await JSONResponse({"code": 403, "error": "forbidden"}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_worker(found: dict[str, Any], pid: int) -> bool:
    # on Windows a venv's python.exe is a launcher: the worker's pid is its child's
    return bool(found.get("pid") == pid or os.name == "nt")


def _ensure(evox: Evox, say: Progress) -> dict[str, Any]:
    result = evox.ensure(say)
    say(f"{evox.name} is ready" if result.installed else f"{evox.name} is up to date: nothing to install")
    return {"created": result.created, "installed": list(result.installed)}


def _install(evox: Evox, packages: list[str], say: Progress) -> dict[str, Any]:
    evox.install(packages, say)
    say(f"installed into {evox.name}: {' '.join(packages)}")
    return {"installed": packages}


def _start(block: Block, evox: Evox, say: Progress) -> dict[str, Any]:
    state = start_block(block, evox, say)
    say(f"{block.name} started (pid {state.pid})")
    final = wait_started(block, 20.0)
    if not final.active:
        lines = tail_lines(block_log(block), 6)
        raise BlockError(f"{block.name} {final.message}; last lines: {' | '.join(lines[-4:])}")
    return final.as_dict()


def _stop(block: Block, say: Progress) -> dict[str, Any] | None:
    state = stop_block(block)
    say(f"{block.name} stopped" if state is not None else f"{block.name} was not running")
    return state.as_dict() if state is not None else None


async def _follow_log(path: Path, closing: asyncio.Event) -> AsyncIterator[tuple[str, Any]]:
    """The last lines, then new ones as they are written (following rotation)."""
    for line in await asyncio.to_thread(tail_lines, path, LOG_LINES):
        yield "line", line
    pos, ino = await asyncio.to_thread(_stat, path)
    partial = ""
    while not closing.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), LOG_POLL)
        size, inode = await asyncio.to_thread(_stat, path)
        if inode != ino or size < pos:
            pos, ino, partial = 0, inode, ""
        if size <= pos:
            continue
        chunk, pos = await asyncio.to_thread(_read_from, path, pos)
        text = partial + chunk
        *lines, partial = text.split("\n")
        for line in lines:
            yield "line", line


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return 0, 0
    return st.st_size, st.st_ino


def _read_from(path: Path, pos: int) -> tuple[str, int]:
    with open(path, "rb") as f:
        f.seek(pos)
        data = f.read()
    return data.decode("utf-8", errors="replace"), pos + len(data)
