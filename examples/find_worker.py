# Nexus Find, the guide's way: at module level, before run_forever, find and api block until
# the worker is online and the answer is in (inside async code, write `await App.find(...)`).
from libs.startup import startup

startup()
import asyncio

from libs.bridge import App as app

App = app(resource="pyfind", public=True, rest=False)

found = App.find(app=App.app)
print("find:", found["code"], found["jids"], flush=True)
for block in found["blocks"]:
    print(f"  {block['jid']} pid {block['pid']} on {block['host']}, {block['inflight']} calls in flight", flush=True)

if found["code"] == 0 and found["jids"]:
    print("ping:", App.api(app=App.app, cmd="ping", jid=found["jids"][0]), flush=True)

loop = asyncio.get_event_loop()
loop.run_forever()
