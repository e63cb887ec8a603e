# Nexus Channel: broadcast to every subscriber. This worker listens on "news" and announces
# itself there when it connects. Try it:  qe listen news   and   qe send news '{"title": "hi"}'
from libs.startup import startup

startup()
import asyncio

from libs.bridge import App as app
from libs.bridge import MessageSpecs

App = app(resource="pychannel", public=True, rest=False)


@App.nexus.Channel("news")  # subscribes to the channel too
async def on_news(specs: MessageSpecs):
    who = "me" if specs.itsme else ("my other block" if specs.itsbro else specs.fromjid)
    print(f"news from {who}: {specs.body}", flush=True)


App.on("__connect", lambda: App.sendtochannel("news", {"hello": App.jid}))

loop = asyncio.get_event_loop()
loop.run_forever()
