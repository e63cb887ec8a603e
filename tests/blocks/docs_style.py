# A worker written the way the public QE worker docs write theirs: startup() after the imports,
# serial_generator imported beside the specs, App(...) with image= and no rest= while App.rest
# is used, a msgreceiver, and a SetInterval that stops itself.
import asyncio

from libs.bridge import APISpecs, MessageSpecs, SetInterval, serial_generator
from libs.bridge import App as app
from libs.startup import startup

startup()

App = app(resource="pydocs", image="/files/app/worker.webp", public=True)


@App.rest.get("/")
def root():
    return {"served": "rest", "serial": len(serial_generator(8))}


@App.rest.get("/items/{item_id}")
def item(item_id: int):
    return {"item_id": item_id}


async def api(specs: APISpecs):
    if specs.cmd == "ping":
        return {"pong": True}


async def msgreceiver(specs: MessageSpecs):
    print("MSG:", specs.fromjid, specs.body, flush=True)


ticks = 0


def tick():
    global ticks
    ticks += 1
    if ticks >= 3:
        print("interval cleared.", flush=True)
        timer.stop()


timer = SetInterval(tick, 100)
timer.start()

App.xmpp.onapi = api
App.xmpp.msgreceiver = msgreceiver
loop = asyncio.get_event_loop()
loop.run_forever()
