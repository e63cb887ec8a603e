"""Ping RPC through the QE SDK next to raw nats-py request/reply, in the same run.

    python bench/rpc.py [--seconds 3] [--rounds 3] [--sequential 2000]

Every figure runs the worker (responder) and the caller in separate processes, against the
same nats-server (a private embedded Nexus on a free port). Raw nats-py uses the control
plane's key (same server, same authentication) and a plain queue subscription that answers
``msg.respond(data)``; the SDK side is a guide-style ``App`` serving ``ping`` and a caller using
``App.api``. Rounds alternate raw/SDK and the median is printed, since these machines are noisy.

Also: seconds from ``python run.py`` to the first ping answered (Nexus already up), and the
resident memory of an idle worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONCURRENCY = 64
RAW_SUBJECT = "bench.raw.ping"
# what a raw caller publishes to reach the SDK worker of app "bench" (QE_BENCH_MIXED=1)
MIXED_SUBJECT = "nx.api.bench.qe.system.nexusd"

# -- roles (run in their own processes) --------------------------------------------------------


async def raw_responder(url: str, seed: str) -> None:
    import nats

    nc = await nats.connect(url, nkeys_seed_str=seed)

    async def on_msg(msg: Any) -> None:
        await msg.respond(b'{"code":0,"pong":true}')

    await nc.subscribe(RAW_SUBJECT, queue="raw", cb=on_msg)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def raw_caller(url: str, seed: str, seconds: float, sequential: int) -> dict[str, Any]:
    import nats

    nc = await nats.connect(url, nkeys_seed_str=seed)
    payload = b'{"cmd":"ping","body":{}}'

    subject = MIXED_SUBJECT if os.environ.get("QE_BENCH_MIXED") else RAW_SUBJECT

    async def one() -> None:
        await nc.request(subject, payload, timeout=10)

    result = await measure(one, seconds, sequential)
    await nc.close()
    return result


async def sdk_caller(url: str, key: str, target: str, seconds: float, sequential: int) -> dict[str, Any]:
    from qe.bridge import App

    # the caller is a worker of another app, so it never serves its own calls
    app = App(resource="pybenchcaller", key=key, nexus=url, autostart=False)
    await app.start()

    async def one() -> None:
        reply = await app.api(target, "ping", {}, timeout=10)
        if reply.get("code") != 0:
            raise RuntimeError(reply)

    result = await measure(one, seconds, sequential)
    await app.stop()
    return result


async def measure(one: Any, seconds: float, sequential: int) -> dict[str, Any]:
    for _ in range(200):  # warm up
        await one()
    latencies = []
    for _ in range(sequential):
        t0 = time.perf_counter()
        await one()
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    done = 0
    deadline = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    return {
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "calls_per_s": done / elapsed,
    }


# -- orchestration -----------------------------------------------------------------------------


def spawn(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"process exited before {needle!r}")
        if needle in line:
            return
    raise RuntimeError(f"timed out waiting for {needle!r}")


def run_role(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def first_ping_seconds(nexus: Any, block: Path, app: str) -> tuple[float, int | None]:
    """Seconds from starting ``python run.py`` to its first answered ping; idle RSS after."""
    from qe.bridge._app import request_api

    async def probe_until_answer(proc: subprocess.Popen[str], t0: float) -> float:
        client = nexus.client()
        await client.connect(reconnect=False)
        try:
            while True:
                try:
                    await request_api(client, app, "ping", {}, None, 1.0, None)
                    return time.perf_counter() - t0
                except Exception:
                    if proc.poll() is not None:
                        raise RuntimeError("worker exited") from None
                    await asyncio.sleep(0.005)
        finally:
            await client.close()

    t0 = time.perf_counter()
    proc = spawn(["run.py"], nexus.env, cwd=block)
    try:
        seconds = asyncio.run(probe_until_answer(proc, t0))
        time.sleep(2.0)  # idle
        rss = rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput window per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=2000, help="sequential calls for p50/p99")
    opts = parser.parse_args()

    from qe.nexus import Registry
    from qe.testing import Nexus

    home = Path(tempfile.mkdtemp(prefix="qe-bench-"))
    nexus = Nexus(home / "home").start()
    procs: list[subprocess.Popen[str]] = []
    try:
        registry = Registry.open(nexus.paths)
        control_seed = registry.control_key().seed
        app = "bench"
        block = nexus.new_block(home, app)
        caller_key = nexus.new_app("benchcaller").secret
        env = nexus.env

        first, rss = first_ping_seconds(nexus, block, app)

        raw_worker = spawn([__file__, "_raw_responder", nexus.url, control_seed], env)
        procs.append(raw_worker)
        wait_line(raw_worker, "ready")
        sdk_worker = spawn(["run.py", "resource=pybenchworker"], nexus.env, cwd=block)
        procs.append(sdk_worker)
        wait_line(sdk_worker, "is online")

        runs: dict[str, list[dict[str, Any]]] = {"raw": [], "sdk": []}
        args = [str(opts.seconds), str(opts.sequential)]
        for _ in range(opts.rounds):
            runs["raw"].append(run_role(["_raw_caller", nexus.url, control_seed, *args], env))
            runs["sdk"].append(run_role(["_sdk_caller", nexus.url, caller_key, app, *args], env))
        report(runs, first, rss, opts)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        nexus.stop()
        shutil.rmtree(home, ignore_errors=True)


def report(runs: dict[str, list[dict[str, Any]]], first: float, rss: int | None, opts: Any) -> None:
    def med(side: str, name: str) -> float:
        return statistics.median(r[name] for r in runs[side])

    print(f"ping RPC, worker and caller in separate processes, median of {opts.rounds} rounds")
    print(f"{'':28}{'raw nats-py':>14}{'QE SDK':>14}{'SDK/raw':>10}")
    for name, label, unit in (
        ("p50_us", "sequential p50", "us"),
        ("p99_us", "sequential p99", "us"),
        ("calls_per_s", f"throughput ({CONCURRENCY} outstanding)", "/s"),
    ):
        raw, sdk = med("raw", name), med("sdk", name)
        print(f"{label:28}{raw:>11,.0f} {unit}{sdk:>11,.0f} {unit}{sdk / raw:>9.2f}x")
    print(f"{'first ping after run.py':28}{first:>25.2f} s")
    if rss is not None:
        print(f"{'idle worker RSS':28}{rss / 1024:>24.1f} MB")
    print("rounds:", json.dumps(runs))


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "_raw_responder":
        asyncio.run(raw_responder(sys.argv[2], sys.argv[3]))
    elif role == "_raw_caller":
        print(json.dumps(asyncio.run(raw_caller(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))))
    elif role == "_sdk_caller":
        a = sys.argv
        print(json.dumps(asyncio.run(sdk_caller(a[2], a[3], a[4], float(a[5]), int(a[6])))))
    else:
        main()
