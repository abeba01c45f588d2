"""Headless Debian Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialing out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def human(size: int) -> str:
    """Sizes as the sidebar writes them (web/js/format.js): powers of 1024, one decimal below 10."""
    units = ["B", "KB", "MB", "GB", "TB"]
    unit = 0
    value = float(size)
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.{0 if unit == 0 or value >= 10 else 1}f} {units[unit]}"


@dataclass
class Console:
    """What the page printed: console messages and uncaught errors."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, url)
    page_errors: list[str] = field(default_factory=list)

    def errors_from(self, needle: str) -> list[str]:
        """Console errors and page errors that mention `needle` (in text or source URL)."""
        out = [f"{t}: {text} ({url})" for t, text, url in self.messages
               if t == "error" and (needle in text or needle in url)]
        out += [e for e in self.page_errors if needle in e]
        return out


@pytest.fixture(scope="session", name="browser")
def browser_fixture():
    if not CHROMIUM.exists():
        raise RuntimeError("Debian's chromium is missing: `./dev test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, comfyui):
    """A page in its own browser context (its own localStorage) on `comfyui`, loaded, its console
    recorded in `page.console`. Close it with page.context.close()."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.messages.append((m.type, m.text, (m.location or {}).get("url", ""))))
    page.on("pageerror", lambda e: console.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
    page.console = console
    page.goto(comfyui.url, wait_until="domcontentloaded")
    # The app is ready once extensions have set up: our sidebar button exists then.
    page.wait_for_selector(".sagemaker-tab-button", timeout=60_000)
    return page


@pytest.fixture(name="page")
def page_fixture(browser, comfyui):
    """A fresh page on the session's ComfyUI."""
    page = new_page(browser, comfyui)
    yield page
    page.context.close()
