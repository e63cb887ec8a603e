# Timers: SetInterval / SetTimeout (and their thread-safe ...Safe forms), and the decorator forms.
from libs.startup import startup

startup()
import asyncio

from libs.bridge import App as app
from libs.bridge import SetInterval, clearInterval, setInterval, setTimeout

App = app(resource="pytimers", public=True, rest=False)

counter = 0


def tick():
    global counter
    counter += 1
    print("tick", counter, flush=True)
    if counter >= 3:
        print("interval cleared.", flush=True)
        ticker.stop()


ticker = SetInterval(tick, 200)
ticker.start()

beats = 0


@setInterval(300, "heartbeat")
async def beat():
    global beats
    beats += 1
    print("beat", beats, flush=True)
    if beats >= 2:
        clearInterval("heartbeat")
        print("heartbeat cleared.", flush=True)


@setTimeout(500)
def later():
    print("timed out once.", flush=True)


loop = asyncio.get_event_loop()
loop.run_forever()
