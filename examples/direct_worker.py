# Nexus Direct: one-way messages to one worker of the app (no reply; the sender learns whether
# a worker took it). Try it:  qe direct <app> '{"text": "hello"}'
from libs.startup import startup

startup()
import asyncio

from libs.bridge import App as app
from libs.bridge import MessageSpecs

App = app(resource="pydirect", public=True, rest=False)


@App.nexus.Direct()
async def on_direct(specs: MessageSpecs):
    print(f"direct from {specs.fromjid} ({specs.role}): {specs.body}", flush=True)


loop = asyncio.get_event_loop()
loop.run_forever()
