"""Waiting in tests: until a condition holds, and how long an event loop went without running a 10 ms ticker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Callable

TICK = 0.01
MAX_GAP = 0.25  # generous: a 10 ms ticker on a loaded 2-core machine; a blocked loop shows 1 s


async def max_tick_gap(work: Awaitable[Any]) -> float:
    """Run ``work`` beside a 10 ms ticker; the longest time, in seconds, the loop went without a tick (a ``work``
    that blocks the loop throughout counts from its start to its end)."""
    ticks = [time.monotonic()]
    done = False

    async def ticker() -> None:
        while not done:
            await asyncio.sleep(TICK)
            ticks.append(time.monotonic())

    ticking = asyncio.ensure_future(ticker())
    try:
        await work
    finally:
        ticks.append(time.monotonic())
        done = True
        await ticking
    return max(later - earlier for earlier, later in zip(ticks, ticks[1:]))

def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (checked every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
