"""Per-block logs: a size-rotated file (``block.log``, ``block.log.1`` ...) and tail reading."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TextIO

__all__ = ["LOG_BACKUPS", "LOG_MAX_BYTES", "RotatingLog", "tail_lines"]

LOG_MAX_BYTES = 1024 * 1024
LOG_BACKUPS = 3


class RotatingLog:
    """Append lines to ``path``; when it would pass ``max_bytes`` it becomes ``path.1`` (and so on)."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def write(self, line: str) -> None:
        text = line if line.endswith("\n") else line + "\n"
        size = len(text.encode("utf-8", errors="replace"))
        if self._size and self._size + size > self.max_bytes:
            self._rotate()
        self._file.write(text)
        self._file.flush()
        self._size += size

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._file.close()


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of the log, reaching into ``path.1`` when the current file is short."""
    lines: deque[str] = deque(maxlen=count)
    for source in (path.with_name(f"{path.name}.1"), path):
        try:
            with open(source, encoding="utf-8", errors="replace") as f:
                for line in f:
                    lines.append(line.rstrip("\n"))
        except OSError:
            continue
    return list(lines)
