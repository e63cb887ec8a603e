# Nexus API: one handler per command (@App.nexus.API), and a catch-all (App.xmpp.onapi).
# Try it:  qe call <app> add '{"a": 2, "b": 3}'
from libs.startup import startup

startup()
import asyncio

from libs.bridge import APISpecs
from libs.bridge import App as app

App = app(resource="pyapi", public=True, rest=False)


@App.nexus.API("add")
async def add(specs: APISpecs):
    return {"sum": specs.body.get("a", 0) + specs.body.get("b", 0)}


async def api(specs: APISpecs):
    if specs.cmd == "whoami":
        return {"you": specs.jid, "role": specs.role}
    return None  # ping is answered for you; anything else is "unknown command"


App.xmpp.onapi = api

loop = asyncio.get_event_loop()
loop.run_forever()
