"""Headless Chromium for the web view's tests: Debian's ``chromium`` driven by Playwright
(installed by ``.ci/run``; Playwright's own browser download is never used). Without them
these tests skip, saying why; in CI (``CI=true``) they fail instead.

Chromium starts with its background networking off (this machine has no network; its
attempts would only be refused) and a fresh profile; every page has a 10 s default timeout,
and the browser is closed on the way out whatever the test did.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CEA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def _missing(why: str):
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


# one browser per module: Playwright's sync API keeps an event loop running in this thread
# while it is open, and a later test's asyncio.run must not find one
@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        _missing(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium "
                 "chromium-driver; .ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # a script error on the page: tests assert there were none
    try:
        yield pg
    finally:
        context.close()
