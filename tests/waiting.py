"""Waiting on conditions inside async tests (never bare sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "condition"
) -> None:
    """Poll ``predicate()`` on the loop until it is truthy; fail after ``timeout`` seconds.

    ``what`` may be a callable, evaluated on failure (to show the state that was reached).
    """
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - a condition poll with a deadline
                await asyncio.sleep(0.01)
    except TimeoutError:
        text = what() if callable(what) else what
        raise AssertionError(f"timed out after {timeout:g} s waiting for {text}") from None


async def until_async(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition") -> None:
    """Like :func:`until` for an async predicate (e.g. a ``find`` call)."""
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():  # noqa: ASYNC110 - a condition poll with a deadline
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None
