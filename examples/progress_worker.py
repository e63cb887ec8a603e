# Long calls: report progress while working; the caller sees it (`qe call` prints it, App.api
# takes on_progress=...). If the caller gives up (timeout, Ctrl+C) this handler is cancelled.
# Try it:  qe call <app> train '{"epochs": 5}'
from libs.startup import startup

startup()
import asyncio

from libs.bridge import APISpecs
from libs.bridge import App as app

App = app(resource="pyprogress", public=True, rest=False)


@App.nexus.API("train")
async def train(specs: APISpecs):
    epochs = int(specs.body.get("epochs", 3))
    try:
        for epoch in range(1, epochs + 1):
            await asyncio.sleep(float(specs.body.get("seconds", 0.05)))
            await specs.progress({"epoch": epoch, "of": epochs})
    except asyncio.CancelledError:
        print("training cancelled by the caller", flush=True)
        raise
    return {"trained": epochs}


loop = asyncio.get_event_loop()
loop.run_forever()
