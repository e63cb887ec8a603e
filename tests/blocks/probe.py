# A worker written the guide's way, with a few extra commands for the tests.
from libs.startup import startup

startup()
import asyncio
import os
import time

from libs.bridge import APISpecs
from libs.bridge import App as app

App = app(resource="pyprobe", public=True, rest=False)
served = 0


async def api(specs: APISpecs):
    global served
    served += 1
    if specs.cmd == "ping":
        return {"pong": True}
    if specs.cmd == "who":
        return {"resource": App.resource, "pid": os.getpid(), "served": served, "caller": specs.jid, "role": specs.role}
    if specs.cmd == "boom":
        raise ValueError("boom")
    if specs.cmd == "sleep":
        await asyncio.sleep(float(specs.body.get("s", 1)))
        return {"slept": specs.body.get("s", 1)}
    return None


def blocking(specs: APISpecs):
    time.sleep(float(specs.body.get("s", 1)))
    return {"blocked": True}


App.xmpp.onapi = api
App.nexus.API("blocking")(blocking)

loop = asyncio.get_event_loop()
loop.run_forever()
