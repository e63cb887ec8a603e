"""Timers: SetInterval/SetTimeout, their Safe forms and the decorator forms, on the running loop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from qe.bridge import (
    SetInterval,
    SetIntervalSafe,
    SetTimeout,
    SetTimeoutSafe,
    UsageError,
    clearInterval,
    setInterval,
    setTimeout,
)
from waiting import until

INTERVAL_MS = 20


async def settle(intervals: int) -> None:
    """Let ``intervals`` timer periods pass, measured by a SetTimeout firing (an event, not a sleep)."""
    fired = asyncio.Event()
    SetTimeout(fired.set, INTERVAL_MS * intervals).start()
    await asyncio.wait_for(fired.wait(), 10)


async def test_an_interval_fires_n_times_then_stops_itself() -> None:
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count >= 5:
            timer.stop()

    timer = SetInterval(tick, INTERVAL_MS)
    timer.start()
    await until(lambda: not timer.running)
    await settle(5)
    assert count == 5 and timer.count == 5


async def test_an_interval_fires_once_per_interval_on_the_monotonic_clock() -> None:
    timer = SetInterval(lambda: None, INTERVAL_MS).start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await until(lambda: timer.count >= 10)
    elapsed = loop.time() - started
    timer.stop()
    expected = elapsed / (INTERVAL_MS / 1000)
    # ticks are on start + k*interval (missed ones skipped), so the count tracks elapsed intervals
    assert timer.count <= expected + 1
    assert elapsed >= 9.5 * INTERVAL_MS / 1000, "ten ticks never come sooner than ten intervals"
    await settle(4)
    assert timer.count in (10, 11), "stopped timers do not fire"


async def test_a_failing_callback_is_logged_and_the_interval_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("sensor glitch")

    with caplog.at_level(logging.ERROR, "qe.timers"):
        timer = SetInterval(flaky, INTERVAL_MS).start()
        await until(lambda: calls >= 3)
        timer.stop()
    assert "sensor glitch" in caplog.text


async def test_async_callbacks_run_as_owned_tasks_and_stop_cancels_them() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_tick() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = SetInterval(long_tick, INTERVAL_MS).start()
    await asyncio.wait_for(started.wait(), 10)
    await settle(3)
    assert timer.count == 1, "a tick is skipped while the previous run is still going"
    timer.stop()
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_a_timeout_fires_once_and_cancel_prevents_it() -> None:
    fired: list[str] = []
    SetTimeout(lambda: fired.append("a"), INTERVAL_MS).start()
    cancelled = SetTimeout(lambda: fired.append("b"), INTERVAL_MS)
    cancelled.start()
    cancelled.cancel()
    await settle(4)
    assert fired == ["a"]


async def test_safe_forms_start_and_stop_from_another_thread() -> None:
    ticks = 0
    fired = asyncio.Event()

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    interval = SetIntervalSafe(tick, INTERVAL_MS)
    timeout = SetTimeoutSafe(fired.set, INTERVAL_MS)
    thread = threading.Thread(target=lambda: (interval.start(), timeout.start()))
    thread.start()
    thread.join()
    await asyncio.wait_for(fired.wait(), 10)
    await until(lambda: ticks >= 3)
    stopper = threading.Thread(target=interval.stop)
    stopper.start()
    stopper.join()
    await until(lambda: not interval.running)
    seen = ticks
    await settle(4)
    assert ticks == seen


async def test_the_plain_forms_refuse_other_threads() -> None:
    timer = SetInterval(lambda: None, INTERVAL_MS)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            timer.start()
        except UsageError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert errors and "SetIntervalSafe" in str(errors[0])
    assert not timer.running


async def test_decorator_forms_and_clear_interval_by_name() -> None:
    ticks: list[int] = []
    once: list[int] = []

    @setInterval(INTERVAL_MS, "test-tick")
    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            assert clearInterval("test-tick")

    @setTimeout(INTERVAL_MS)
    def later() -> None:
        once.append(1)

    await until(lambda: len(ticks) >= 3 and once)
    await settle(4)
    assert len(ticks) == 3 and once == [1]
    assert clearInterval("test-tick") is False


def test_bad_periods_are_refused() -> None:
    loop = asyncio.new_event_loop()
    try:
        for bad in (0, -5, float("nan"), "100", True):
            with pytest.raises((ValueError, TypeError)):
                SetInterval(lambda: None, bad, loop=loop)  # type: ignore[arg-type]
    finally:
        loop.close()
