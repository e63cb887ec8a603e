# REST: App.rest is a FastAPI app served on the `rest` port inside the worker's own loop, so a
# route can use the Nexus directly. Try it:  python rest_worker.py rest=8000, then open
# http://127.0.0.1:8000/ (set QE_REST_HOST=0.0.0.0 to serve other machines).
from libs.startup import startup

startup()
import asyncio

from libs.bridge import App as app

App = app(resource="pyrest", public=True, rest=8000)


@App.rest.get("/")
async def home():
    return {"worker": App.jid, "online": (await App.find())["jids"]}


@App.rest.post("/ping/{target}")
async def ping(target: str):
    return await App.api(app=target, cmd="ping", timeout=5)


loop = asyncio.get_event_loop()
loop.run_forever()
