"""Long actions of the page (create evox, install, start, stop) run as jobs: a thread does the
work, its progress lines are streamed to any follower, the result is kept for a while."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._errors import QEError
from ._pip import Progress

__all__ = ["Job", "Jobs"]

log = logging.getLogger("qe.manager")
KEEP = 50
CLOSE_TIMEOUT = 10.0


class Job:
    def __init__(self, job_id: str, title: str, loop: asyncio.AbstractEventLoop) -> None:
        self.id = job_id
        self.title = title
        self.lines: list[str] = []
        self.done = False
        self.error: str | None = None
        self.result: Any = None
        self._loop = loop
        self._waiters: set[asyncio.Event] = set()

    def emit(self, line: str) -> None:
        """Add a progress line (callable from the worker thread)."""
        self._loop.call_soon_threadsafe(self._add, line)

    def _add(self, line: str) -> None:
        self.lines.append(line)
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def finish(self, error: str | None, result: Any = None) -> None:
        self.done, self.error, self.result = True, error, result
        self._wake()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "done": self.done, "error": self.error, "result": self.result}

    async def follow(self) -> AsyncIterator[str]:
        """Every line, then return when the job is done."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        sent = 0
        try:
            while True:
                waiter.clear()
                while sent < len(self.lines):
                    yield self.lines[sent]
                    sent += 1
                if self.done:
                    return
                await waiter.wait()
        finally:
            self._waiters.discard(waiter)


class Jobs:
    """The jobs of one page server; it owns their tasks and waits for them on close."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, title: str, work: Callable[[Progress], Any]) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(str(next(self._ids)), title, loop)
        self._jobs[job.id] = job
        for old in [j for j in self._jobs.values() if j.done][: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[old.id]
        task = loop.create_task(self._run(job, work), name=f"manager:job:{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Callable[[Progress], Any]) -> None:
        try:
            result = await asyncio.to_thread(work, job.emit)
        except QEError as exc:
            job.finish(exc.message)
        except Exception as exc:  # shown on the page; the server keeps serving
            log.exception("job %s failed", job.title)
            job.finish(f"{type(exc).__name__}: {exc}")
        else:
            job.finish(None, result)

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Let running jobs finish (a pip install is not cut in half), then cancel leftovers."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
