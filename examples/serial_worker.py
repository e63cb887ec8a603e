# Hardware: a worker that drives a serial device through a small adapter. SERIAL_PORT=sim (the
# default) uses a simulated thermometer, so this runs and is tested without hardware; a real
# port (SERIAL_PORT=/dev/ttyUSB0, needs `pip install pyserial`) uses the same commands.
# Serial I/O blocks, so the handlers are plain functions: the worker runs them in a thread.
# Try it:  qe call <app> query '{"command": "TEMP?"}'
from libs.startup import startup

startup()
import asyncio
import os
import threading
from typing import Protocol

from libs.bridge import APISpecs
from libs.bridge import App as app

App = app(resource="pyserial", public=True, rest=False)


class Port(Protocol):
    def write(self, data: bytes) -> None: ...
    def readline(self) -> bytes: ...


class SimulatedThermometer:
    """Answers like the real device: 'TEMP?' -> 'TEMP 21.5', 'ID?' -> 'THERMO-1'."""

    def __init__(self) -> None:
        self._answer = b""

    def write(self, data: bytes) -> None:
        command = data.strip().decode()
        self._answer = {"TEMP?": b"TEMP 21.5\n", "ID?": b"THERMO-1\n"}.get(command, b"ERR unknown\n")

    def readline(self) -> bytes:
        answer, self._answer = self._answer, b""
        return answer


def open_port(name: str) -> Port:
    if name == "sim":
        return SimulatedThermometer()
    import serial  # pyserial, only for real hardware

    return serial.Serial(name, 9600, timeout=2)


port = open_port(os.environ.get("SERIAL_PORT", "sim"))
lock = threading.Lock()  # one command at a time on the wire


def ask(command: str) -> str:
    with lock:
        port.write(command.encode() + b"\n")
        return port.readline().decode().strip()


@App.nexus.API("query")
def query(specs: APISpecs):
    return {"answer": ask(str(specs.body.get("command", "ID?")))}


loop = asyncio.get_event_loop()
loop.run_forever()
