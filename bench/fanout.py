"""Channel fan-out: one sender, 100 subscribers, messages/s delivered; SDK next to raw nats-py.

    python bench/fanout.py [--subscribers 100] [--messages 2000] [--rounds 3]

Both sides run in this one process on one event loop, against the same private nats-server:
raw nats-py uses the control plane's key, plain subscriptions on one subject and counting
callbacks; the SDK side is ``subscribers`` in-process ``App`` workers (each its own connection,
registered with the control plane) with a ``@App.nexus.Channel`` handler, and a sender using
``await App.sendtochannel``. A round ends when every subscriber has every message; the figure
is deliveries (messages x subscribers) per second. Rounds alternate; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = {"n": 0, "text": "x" * 64}


async def raw_round(url: str, seed: str, subscribers: int, messages: int) -> float:
    import nats

    counts = [0] * subscribers
    done = asyncio.Event()
    remaining = subscribers
    conns = [await nats.connect(url, nkeys_seed_str=seed) for _ in range(subscribers)]

    def make_cb(i: int) -> Any:
        async def cb(msg: Any) -> None:
            nonlocal remaining
            counts[i] += 1
            if counts[i] == messages:
                remaining -= 1
                if remaining == 0:
                    done.set()

        return cb

    for i, nc in enumerate(conns):
        await nc.subscribe("bench.fanout", cb=make_cb(i))
        await nc.flush()
    sender = await nats.connect(url, nkeys_seed_str=seed)
    import orjson

    started = time.perf_counter()
    for n in range(messages):
        await sender.publish("bench.fanout", orjson.dumps({**BODY, "n": n}))
    await sender.flush()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    for nc in [sender, *conns]:
        await nc.close()
    return subscribers * messages / elapsed


async def sdk_round(
    url: str, key: str, sender_key: str, subscribers: int, messages: int, tag: int, awaited: bool
) -> float:
    from qe.bridge import App, MessageSpecs

    channel = f"bench-fanout-{tag}"
    counts = [0] * subscribers
    done = asyncio.Event()
    remaining = subscribers
    apps: list[App] = []

    def make_handler(i: int) -> Any:
        async def handler(specs: MessageSpecs) -> None:
            nonlocal remaining
            counts[i] += 1
            if counts[i] == messages:
                remaining -= 1
                if remaining == 0:
                    done.set()

        return handler

    for i in range(subscribers):
        app = App(resource=f"pysub{tag}-{i}", key=key, nexus=url, autostart=False)
        app.nexus.Channel(channel)(make_handler(i))
        apps.append(app)
    await asyncio.gather(*(a.start() for a in apps))
    await asyncio.gather(*(a.subscribe(channel) for a in apps))
    sender = App(resource=f"pysender{tag}", key=sender_key, nexus=url, autostart=False)
    await sender.start()
    started = time.perf_counter()
    if awaited:  # wait for each send before the next
        for n in range(messages):
            await sender.sendtochannel(channel, {**BODY, "n": n})
    else:  # the guide's style: App.sendtochannel(...) without await (sends stay in order)
        for n in range(messages):
            last = sender.sendtochannel(channel, {**BODY, "n": n})
        await last
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(a.stop() for a in [sender, *apps]))
    return subscribers * messages / elapsed


async def run(opts: Any) -> None:
    import logging

    from qe.nexus import Registry
    from qe.testing import Nexus

    logging.getLogger("qe").setLevel(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="qe-bench-"))
    nexus = Nexus(home / "home").start()
    try:
        seed = Registry.open(nexus.paths).control_key().seed
        key = nexus.new_app("benchfan").secret
        sender_key = nexus.new_app("benchsend").secret
        raw: list[float] = []
        sdk: list[float] = []
        sdk_awaited: list[float] = []
        for tag in range(opts.rounds):
            raw.append(await raw_round(nexus.url, seed, opts.subscribers, opts.messages))
            sdk.append(await sdk_round(nexus.url, key, sender_key, opts.subscribers, opts.messages, 2 * tag, False))
            sdk_awaited.append(
                await sdk_round(nexus.url, key, sender_key, opts.subscribers, opts.messages, 2 * tag + 1, True)
            )
        r, s, sa = statistics.median(raw), statistics.median(sdk), statistics.median(sdk_awaited)
        print(f"channel fan-out: 1 sender -> {opts.subscribers} subscribers, {opts.messages} messages per round,")
        print(f"one process, one loop, median of {opts.rounds} rounds (deliveries per second)")
        print(f"{'':34}{'deliveries/s':>14}{'vs raw':>9}")
        print(f"{'raw nats-py (publish loop)':34}{r:>14,.0f}{1:>8.2f}x")
        print(f"{'QE SDK, sendtochannel unawaited':34}{s:>14,.0f}{s / r:>8.2f}x")
        print(f"{'QE SDK, await each sendtochannel':34}{sa:>14,.0f}{sa / r:>8.2f}x")
        for name, values in (("raw", raw), ("sdk", sdk), ("sdk awaited", sdk_awaited)):
            print(f"rounds {name}:", [round(x) for x in values])
    finally:
        nexus.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
