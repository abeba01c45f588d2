"""Headless Debian Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialing out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


# The frontend ComfyUI pins, and the newest comfyui-frontend-package (`./dev test` unpacks it and
# names its static folder in COMFYUI_NEWEST_FRONTEND).
FRONTENDS = ("pinned", "newest")
TAB_ID = "sagemaker"
APP = "window.comfyAPI.app.app"
EXTENSION_JS = "/extensions/comfyui-sagemaker/js"
# ms, for every expect(): a check returns as soon as it holds, so a generous deadline costs a passing test
# nothing and keeps a busy machine (a ComfyUI starting beside the browser) from failing it.
EXPECT_TIMEOUT = 30_000


def frontend_args(frontend: str) -> list[str]:
    if frontend == "pinned":
        return []
    root = os.environ.get("COMFYUI_NEWEST_FRONTEND")
    if not root or not Path(root, "index.html").exists():
        raise RuntimeError("COMFYUI_NEWEST_FRONTEND names no unpacked comfyui-frontend-package: run the tests "
                           "with `./dev test` (it downloads the newest)")
    return ["--front-end-root", root]


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
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, comfyui):
    """A page in its own browser context (its own localStorage) on `comfyui`, loaded, its console
    recorded in `page.console`. Close it with page.context.close(). A load costs seconds: a test that
    needs no fresh page takes its module's, reset (the `page` fixture, `reset_page`)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.messages.append((m.type, m.text, (m.location or {}).get("url", ""))))
    page.on("pageerror", lambda e: console.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
    page.console = console
    page.goto(comfyui.url, wait_until="domcontentloaded")
    wait_ready(page)
    spy_toasts(page)
    return page


def wait_ready(page) -> None:
    """The app is ready once extensions have set up: our tab is registered with the host then."""
    page.wait_for_function(
        "() => window.comfyAPI?.app?.app?.extensionManager?.sidebarTab?.sidebarTabs"
        f"?.some((t) => t.id === {TAB_ID!r})",
        timeout=60_000)


def open_sidebar(page) -> None:
    """Open the SageMaker tab through the host's own command (what its sidebar button runs)."""
    panel = page.get_by_test_id("sagemaker-panel")
    if not panel.is_visible():
        page.evaluate(f"() => {APP}.extensionManager.command.execute('Workspace.ToggleSidebarTab.{TAB_ID}')")
    panel.wait_for(state="visible", timeout=15_000)


def sidebar_button(page):
    """The host's button for our tab, by its accessible name (our tooltip): what a user clicks."""
    return page.get_by_role("button", name=re.compile(r"^SageMaker templates"))


SPY_TOASTS = f"""() => {{
    const toast = {APP}.extensionManager.toast;
    window.__smToasts = [];
    if (toast.add.__smSpy) return;
    const add = toast.add;
    toast.add = (message) => {{ window.__smToasts.push(message); return add.call(toast, message); }};
    toast.add.__smSpy = true;
}}"""


def spy_toasts(page) -> None:
    """Record each notification asked of the host's public toast API (then shown by the host as usual),
    so a test can count them: newer frontends announce all toasts of a kind in one live region. Again on
    the same page: the count starts over."""
    page.evaluate(SPY_TOASTS)


def dismiss_toasts(page) -> None:
    """Close every notification, as their close buttons do (the host's toast API): on 1.32 they stand over the
    Run button, and a click waits until they go by themselves."""
    page.evaluate(f"""() => {{
        const toast = {APP}.extensionManager.toast;
        (toast.removeAll ?? toast.dismissAll).call(toast);
    }}""")


def toast_count(page, text: str) -> int:
    """How many notifications the page asked for whose summary or detail holds `text`."""
    return page.evaluate("(t) => window.__smToasts.filter((m) => `${m.summary} ${m.detail}`.includes(t)).length",
                         text)


def toasts(page, text: str):
    """The host's notifications that say `text`, found by their ARIA roles (toasts are alerts or
    status messages to assistive technology), not by the host's class names. The first such one:
    count them with toast_count()."""
    return page.get_by_role("alert").or_(page.get_by_role("status")).filter(has_text=text).first


# What a test may have changed on a page, undone through the page and the host's public stores (no reload:
# a load costs seconds). Our tab is closed, so its next open draws every section anew from the server, as
# on a fresh page (the dialogs and panels of ours live in it); what we keep in the browser is forgotten
# (collapsed sections, Prompt on AWS: through its module, so the page's listeners hear it); the canvas is
# a new default graph in a tab of its own and every other tab is closed (a template's tab would keep a
# test's edits: loading the template again goes back to it); batch count 1. No notification is left either
# (reset_page).
RESET = f"""async () => {{
    const app = {APP};
    const manager = app.extensionManager;
    const tabs = manager.sidebarTab;
    if (tabs.activeSidebarTabId) tabs.toggleSidebarTab(tabs.activeSidebarTabId);
    localStorage.removeItem("sagemaker.collapsed");
    const {{ setPromptOnAws }} = await import("{EXTENSION_JS}/switch.js");
    setPromptOnAws(false);
    await app.loadGraphData();
    const workflows = manager.workflow;
    for (const w of [...workflows.openWorkflows]) if (w !== workflows.activeWorkflow) await workflows.closeWorkflow(w);
    manager.queueSettings.batchCount = 1;
}}"""


def reset_page(page) -> None:
    """A page an earlier test used, as a test expects a freshly loaded one (see RESET), its console
    record empty. Modal host dialogs are closed first: they would block the clicks that follow."""
    from playwright.sync_api import expect

    close_host_dialogs(page)
    page.evaluate(RESET)
    expect(page.get_by_test_id("sagemaker-panel")).to_have_count(0)
    dismiss_toasts(page)
    page.evaluate(SPY_TOASTS)
    page.console.messages.clear()
    page.console.page_errors.clear()


@pytest.fixture(scope="module")
def module_page(browser, comfyui):
    """One page per module (and frontend) on the session's ComfyUI, loaded once."""
    page = new_page(browser, comfyui)
    yield page
    page.context.close()


@pytest.fixture(name="page")
def page_fixture(module_page):
    """The module's page on the session's ComfyUI, reset (reset_page): a test that needs what only a load
    gives (a default a page starts with, another browser's localStorage) opens its own with new_page()."""
    reset_page(module_page)
    return module_page


def host_dialogs(page):
    """The host's modal dialogs (role=dialog), not the extension's own (their test ids start with sagemaker)."""
    return page.locator('[role="dialog"]:not([data-testid^="sagemaker"])')


# The host's dialog store (Pinia): the dialogs it has opened, drawn or about to be. Read only.
DIALOG_STORE = "document.querySelector('#vue-app')?.__vue_app__?.config.globalProperties.$pinia?._s.get('dialog')"


def close_host_dialogs(page) -> None:
    """Close the host's modal dialogs with Escape, as a user does. Call it once the event that may open one
    has been handled (the graph loaded, the refused prompt answered, the execution error received): the
    host opens its dialogs in its dialog store from that very handler (1.32: missing nodes or models on
    load, a refused prompt, an execution error; newer frontends show panels that block nothing), so an
    empty store means no dialog is coming, without waiting for one that does not."""
    from playwright.sync_api import expect

    # The dialogs shown: an entry stays in the stack, not visible, until its hide animation has ended.
    opened = f"() => {DIALOG_STORE}?.dialogStack?.filter((d) => d.visible).length ?? -1"
    dialogs = host_dialogs(page)
    if page.evaluate(opened) == -1:  # a host without that store: give a dialog a moment to show
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            dialogs.first.wait_for(state="visible", timeout=2_000)
        except PlaywrightTimeout:
            return
        for _ in range(3):
            page.keyboard.press("Escape")
            if dialogs.count() == 0:
                break
        expect(dialogs).to_have_count(0)
        return
    for _ in range(5):
        count = page.evaluate(opened)
        if count <= 0:
            break
        dialogs.first.wait_for(state="visible")
        page.keyboard.press("Escape")
        page.wait_for_function(f"(n) => ({opened})() < n", arg=count)
    expect(dialogs).to_have_count(0)


def set_batch_count(page, count: int) -> None:
    """The host's batch count (the store behind its Run button's number field), through its public API."""
    page.evaluate(f"(n) => {{ {APP}.extensionManager.queueSettings.batchCount = n; }}", count)
    page.wait_for_function(f"(n) => {APP}.extensionManager.queueSettings.batchCount === n", arg=count)
