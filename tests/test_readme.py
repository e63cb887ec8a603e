"""The README stays true: its sample output is what the commands print, its lists are complete."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_qe
from qe.testing import Nexus

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The text under the heading ``title``, up to the next heading."""
    after = README.split(f"{title}\n", 1)[1]
    return re.split(r"\n#{2,3} ", after, maxsplit=1)[0]


def normalised_find_line(line: str, app: str, uid: str) -> str:
    line = line.replace(f"{uid}@{app}/", "UID@APP/").replace(f"uid {uid} ", "uid UID ")
    line = re.sub(r"pid \d+ on \S+", "pid PID on HOST", line)
    return re.sub(r"online since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "online since WHEN", line)


def test_the_readme_qe_find_sample_is_what_qe_find_prints(qe_nexus: Nexus, qe_worker, tmp_path, unique_app) -> None:
    sample = section("## Quick start: the guide's worker").split("$ qe find test\n", 1)[1].splitlines()[0]
    app = unique_app("readme")
    qe_worker(qe_nexus.new_block(tmp_path, app))
    found = run_qe(qe_nexus, "find", app)
    assert found.returncode == 0, found.stderr
    owner = qe_nexus.registry.owner
    assert normalised_find_line(found.stdout.strip(), app, owner) == normalised_find_line(sample, "test", "root")


def test_the_readme_settings_name_every_environment_variable_a_worker_reads() -> None:
    read = set(re.findall(r'"(QE_[A-Z_]+)"', (ROOT / "src" / "qe" / "_config.py").read_text()))
    assert {"QE_HOME", "QE_KEY", "QE_NEXUS"} <= read, "the pattern still finds the variables"
    named = set(re.findall(r"`(QE_[A-Z_]+)`", section("### Settings")))
    assert sorted(read - named) == []
