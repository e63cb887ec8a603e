# A guide-style worker with rest=False: reports whether the web stack got imported.
from libs.startup import startup

startup()
import asyncio
import sys

from libs.bridge import App as app

App = app(resource="pynorest", public=True, rest=False)


def report() -> None:
    web = sorted(name for name in ("fastapi", "uvicorn", "starlette") if name in sys.modules)
    print(f"web modules loaded: {web}", flush=True)


App.on("__connect", report)

loop = asyncio.get_event_loop()
loop.run_forever()
