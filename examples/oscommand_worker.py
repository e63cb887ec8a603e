# OS commands, for the owner only: public=False already refuses "user" callers (the Nexus tells
# them "forbidden"); this handler also refuses partners, runs no shell, and only allowed programs.
# Try it:  qe call <app> run '{"argv": ["uname", "-a"]}'
from libs.startup import startup

startup()
import asyncio

from libs.bridge import APISpecs, Forbidden
from libs.bridge import App as app

App = app(resource="pyoscmd", public=False, rest=False)

ALLOWED = {"echo", "uname", "uptime", "df", "whoami", "date"}


@App.nexus.API("run")
async def run(specs: APISpecs):
    if specs.role != "owner":
        raise Forbidden("only the owner may run commands")
    argv = specs.body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return {"code": 400, "error": "argv must be a non-empty list of texts"}
    if argv[0] not in ALLOWED:
        return {"code": 403, "error": f"{argv[0]!r} is not allowed; allowed: {', '.join(sorted(ALLOWED))}"}
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), float(specs.body.get("timeout", 10)))
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    return {"exit": proc.returncode, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


loop = asyncio.get_event_loop()
loop.run_forever()
