"""Repro: a NATS connection opened before another connection subscribes may miss its messages.

    python scripts/repro_nats_late_interest.py [--rounds 60]

Plain nats-py against the embedded Nexus (control-plane key, no permissions, no reloads):
connect A and B, A subscribes and flushes (the server confirmed the SUB), A and B publish one
message each, B flushes. In a few % of rounds A receives only its own message. Opening B after
A's subscription makes the loss disappear. Seen with nats-server 2.15.1 and nats-py 2.16.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any


async def run(rounds: int, late: bool) -> int:
    import nats

    from qe.nexus import Registry
    from qe.testing import Nexus

    home = Path(tempfile.mkdtemp(prefix="qe-repro-"))
    nexus = Nexus(home / "home").start()
    lost = 0
    try:
        seed = Registry.open(nexus.paths).control_key().seed
        for r in range(rounds):
            got: list[str] = []

            async def cb(msg: Any, got: list[str] = got) -> None:
                got.append(msg.subject)

            a = await nats.connect(nexus.url, nkeys_seed_str=seed)
            b = None if late else await nats.connect(nexus.url, nkeys_seed_str=seed)
            await a.subscribe(f"t.c{r}.>", cb=cb)
            await a.flush()
            if b is None:
                b = await nats.connect(nexus.url, nkeys_seed_str=seed)
            await a.publish(f"t.c{r}.a", b"{}")
            await b.publish(f"t.c{r}.b", b"{}")
            await b.flush()
            for _ in range(100):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.01)
            lost += len(got) != 2
            await a.close()
            await b.close()
    finally:
        nexus.stop()
        shutil.rmtree(home, ignore_errors=True)
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60)
    opts = parser.parse_args()
    early = asyncio.run(run(opts.rounds, late=False))
    late = asyncio.run(run(opts.rounds, late=True))
    print(f"B connected before A subscribed: {early}/{opts.rounds} rounds lost B's message")
    print(f"B connected after A subscribed:  {late}/{opts.rounds} rounds lost B's message")


if __name__ == "__main__":
    main()
