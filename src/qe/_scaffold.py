"""``qe new <app>``: write a block folder ``wpy<app>/`` from the templates in ``_templates/block``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._config import BLOCK_CONFIG, BLOCK_PREFIX, KEY_FILE
from ._errors import ConfigError
from ._keys import AppKey, write_secret_file
from ._names import check_app
from .manager._location import env_python, evox_location

__all__ = ["BlockFiles", "block_folder_name", "write_block"]

_RENAMES = {"gitignore": ".gitignore"}


def block_folder_name(app: str) -> str:
    return f"{BLOCK_PREFIX}{check_app(app)}"


@dataclass(frozen=True)
class BlockFiles:
    folder: Path
    written: tuple[str, ...]


def _templates() -> list[tuple[str, str]]:
    root = resources.files("qe") / "_templates" / "block"
    out: list[tuple[str, str]] = []

    def walk(node: object, prefix: str) -> None:
        for child in node.iterdir():  # type: ignore[attr-defined]
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            elif child.name.endswith(".tmpl"):
                out.append((name.removesuffix(".tmpl"), child.read_text()))

    walk(root, "")
    return sorted(out)


def write_block(
    parent: Path, key: AppKey, nexus_url: str, *, interpreter: str | None = None, tls_ca: Path | None = None
) -> BlockFiles:
    """Create ``parent/wpy<app>``; refuses to overwrite an existing block."""
    folder = parent / block_folder_name(key.app)
    if (folder / "run.py").exists():
        raise ConfigError(f"{folder} already holds a block (run.py exists); not overwriting it")
    written: list[str] = []
    for rel, text in _templates():
        parts = rel.split("/")
        parts[-1] = _RENAMES.get(parts[-1], parts[-1])
        path = folder.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append("/".join(parts))
    settings = {
        # VS Code's play button runs run.py in the shared evox environment (made on the first run)
        "python.defaultInterpreterPath": interpreter or str(env_python(evox_location())),
        "python.terminal.activateEnvironment": True,
    }
    (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    written.append(".vscode/settings.json")
    (folder / BLOCK_CONFIG).write_text(
        "# QE block configuration (see 'qe new --help'); the key lives in qe.key, never here.\n"
        f'app = "{key.app}"\n'
        f'nexus = "{nexus_url}"\n'
        f'key_file = "{KEY_FILE}"\n'
        + (f"tls_ca = {json.dumps(str(tls_ca))}\n" if tls_ca is not None else "")
        + "# The block's resource (starts with 'py', unique among the app's online blocks) is the one\n"
        "# run.py gives App(resource=...); a value here is used only when the code gives none, and\n"
        "# 'python run.py resource=pyworker2' (or QE_RESOURCE) overrides both.\n"
        '# resource = "pyworker1"\n'
    )
    written.append(BLOCK_CONFIG)
    write_secret_file(folder / KEY_FILE, key.secret + "\n")
    written.append(KEY_FILE)
    return BlockFiles(folder, tuple(sorted(written)))
