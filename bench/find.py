"""Find latency with 1000 registered blocks; a raw nats-py request/reply of the same size as reference.

    python bench/find.py [--blocks 1000] [--calls 500] [--rounds 3]

One client registers ``blocks`` blocks of one app with the control plane (its key may publish
``nx.sys.register.<app>.<uid>.<any resource>``) and keeps them alive with heartbeats. Then, in
the same process and against the same nats-server, sequential ``App.find(app=...)`` calls (the
control plane answers with all 1000 blocks) alternate with sequential raw nats-py requests to a
raw responder that answers with the same bytes, so the difference is the control plane's and
the SDK's own work; a second reference decodes the reply too (most of find's extra cost is
decoding ~200 KB of JSON into 12,000 Python objects). Medians of the rounds' p50/p99 are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def keep_alive(client: Any, app: str, uid: str, blocks: int) -> None:
    from qe._wire import encode

    while True:
        for i in range(blocks):
            info = {"instance": f"bench{i}", "public": True, "host": "bench", "pid": i, "since": 0.0, "inflight": 0}
            await client.publish(f"nx.sys.hb.{app}.{uid}.pyblock{i}", encode(info))
        await asyncio.sleep(1.0)


async def run(opts: Any) -> None:
    import logging

    import nats

    from qe._wire import encode
    from qe.bridge import App
    from qe.bridge._client import NexusClient
    from qe.nexus import Registry
    from qe.testing import Nexus

    logging.getLogger("qe").setLevel(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="qe-bench-"))
    nexus = Nexus(home / "home").start()
    try:
        seed = Registry.open(nexus.paths).control_key().seed
        app = "benchfind"
        key = nexus.new_app(app)
        from qe._names import Identity

        filler = NexusClient(Identity(app, key.uid, "pyfiller"), key, (nexus.url,))
        await filler.connect()
        replies = await asyncio.gather(
            *(
                filler.request(
                    f"nx.sys.register.{app}.{key.uid}.pyblock{i}",
                    encode({"instance": f"bench{i}", "public": True, "host": "bench", "pid": i, "since": 0.0}),
                    timeout=30,
                    target="control plane",
                )
                for i in range(opts.blocks)
            )
        )
        assert all(r["code"] == 0 for r in replies)
        alive = asyncio.create_task(keep_alive(filler, app, key.uid, opts.blocks))

        caller_key = nexus.new_app("benchfindcaller").secret
        caller = App(resource="pyfindcaller", key=caller_key, nexus=nexus.url, autostart=False)
        await caller.start()
        found = await caller.find(app=app)
        assert found["code"] == 0 and len(found["jids"]) >= opts.blocks, found.get("error")
        payload = encode(found)

        raw = await nats.connect(nexus.url, nkeys_seed_str=seed)

        async def respond(msg: Any) -> None:
            await msg.respond(payload)

        await raw.subscribe("bench.find", cb=respond)
        await raw.flush()
        raw_caller = await nats.connect(nexus.url, nkeys_seed_str=seed)

        import orjson

        rounds: dict[str, list[tuple[float, float]]] = {"raw": [], "decoded": [], "sdk": []}
        for _ in range(opts.rounds):
            for side in ("raw", "decoded"):
                samples: list[float] = []
                for _ in range(opts.calls):
                    t0 = time.perf_counter()
                    msg = await raw_caller.request("bench.find", b"{}", timeout=10)
                    if side == "decoded":
                        orjson.loads(msg.data)
                    samples.append((time.perf_counter() - t0) * 1e6)
                rounds[side].append(percentiles(samples))
            samples = []
            for _ in range(opts.calls):
                t0 = time.perf_counter()
                reply = await caller.find(app=app)
                samples.append((time.perf_counter() - t0) * 1e6)
                assert reply["code"] == 0
            rounds["sdk"].append(percentiles(samples))

        def med(side: str, i: int) -> float:
            return statistics.median(r[i] for r in rounds[side])

        size = f"{len(payload):,}"
        print(f"find with {opts.blocks} registered blocks (reply {size} bytes), {opts.calls} sequential calls,")
        print(f"median of {opts.rounds} rounds; reference: raw nats-py request/reply of the same reply bytes")
        print("('raw + decode': the same raw request, then orjson.loads of the reply, as find must do)")
        print(f"{'':8}{'raw nats-py':>14}{'raw + decode':>15}{'QE find':>14}{'find/raw':>10}{'find/raw+decode':>17}")
        for i, label in ((0, "p50"), (1, "p99")):
            r, d, f = med("raw", i), med("decoded", i), med("sdk", i)
            print(f"{label:8}{r:>11,.0f} us{d:>12,.0f} us{f:>11,.0f} us{f / r:>9.2f}x{f / d:>16.2f}x")
        alive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await alive
        await caller.stop()
        await filler.close()
        await raw.close()
        await raw_caller.close()
    finally:
        nexus.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
