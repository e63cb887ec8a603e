"""The manager page in a real Chromium (Debian's, driven by Playwright): start a block, watch it
come online and log, ping it, stop it; install into evox with live progress; clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from manager_kit import EvoxKit, make_wheel
from qe.testing import Nexus, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the README's picture; refreshed when QE_SCREENSHOTS=1, else written to the test's temp dir
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "manager.png"


@pytest.fixture
def project(qe_nexus: Nexus, tmp_path: Path, unique_app) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    qe_nexus.new_block(folder, unique_app("web"))
    (folder / "wpynorun").mkdir()  # a block folder without run.py
    return folder


@pytest.fixture
def manager_url(evox: EvoxKit, project: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qe", "manager", "--dir", str(project), "--port", str(port)],
        env=evox.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"

    def serving() -> bool:
        assert proc.poll() is None, "qe manager exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_until(serving, 20, what="the manager page")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1180, "height": 760})
        finally:
            browser.close()


def test_the_page_starts_a_block_sees_it_online_pings_it_and_stops_it(
    manager_url: str, page: Page, project: Path, tmp_path: Path
) -> None:
    block = next(p.name for p in project.iterdir() if p.name != "wpynorun")
    page.goto(manager_url)
    card = page.locator(f'[data-block="{block}"]')
    expect(card.locator("svg.py")).to_be_visible()
    expect(card.locator(".state")).to_have_text("stopped")
    card.locator('button[data-action="start"]').click()
    expect(card.locator(".state")).to_have_text("online", timeout=30_000)
    expect(card.locator(".meta")).to_contain_text("pid ")
    expect(page.locator("#log")).to_contain_text("is online", timeout=10_000)
    card.locator('button[data-action="ping"]').click()
    expect(card.locator(".ping")).to_have_text('ping: {"code":0,"pong":true}', timeout=10_000)
    expect(page.locator("#evox-status")).to_contain_text("3.12")
    shot = DOCS_SCREENSHOT if os.environ.get("QE_SCREENSHOTS") == "1" else tmp_path / "manager.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000, "the screenshot shows the page"
    card.locator('button[data-action="stop"]').click()
    expect(card.locator(".state")).to_have_text("stopped", timeout=30_000)
    expect(page.locator("#log")).to_contain_text("stopped on request")


def test_the_page_installs_a_package_into_evox_with_live_progress(
    manager_url: str, page: Page, tmp_path: Path, evox: EvoxKit
) -> None:
    wheel = make_wheel(tmp_path / "wheels", "qetinyweb")
    page.goto(manager_url)
    page.fill("#install-input", str(wheel))
    page.click("#install-button")
    expect(page.locator("#activity")).to_contain_text("Successfully installed qetinyweb-1.0", timeout=60_000)
    expect(page.locator("#message")).to_have_text(f"pip install {wheel}: done")
    expect(page.locator("#evox-packages")).to_contain_text("qetinyweb 1.0", timeout=20_000)
    assert subprocess.run([str(evox.python), "-c", "import qetinyweb"], check=False).returncode == 0


def test_the_page_shows_user_errors_as_one_line(manager_url: str, page: Page, project: Path) -> None:
    page.goto(manager_url)
    norun = page.locator('[data-block="wpynorun"]')
    expect(norun.locator(".state")).to_have_text("no run.py")
    expect(norun.locator('button[data-action="start"]')).to_be_disabled()
    block = next(p.name for p in project.iterdir() if p.name != "wpynorun")
    page.locator(f'[data-block="{block}"] button[data-action="open"]').click()
    expect(page.locator("#message")).to_contain_text("VS Code's 'code' command was not found")
    page.fill("#install-input", str(project / "nope-1.0-py3-none-any.whl"))
    page.click("#install-button")
    expect(page.locator("#message")).to_contain_text("failed: Could not install packages", timeout=60_000)
