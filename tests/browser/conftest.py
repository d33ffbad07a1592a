"""A real server for the browser: uvicorn in a thread of the test process, on the test database."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application
from django.test import Client

# The TPA fixtures, for the walk from upload to gold.
from tests.tpa.conftest import deployed, make_tpa  # noqa: F401

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server_url(django_db_setup: None) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        ASGIStaticFilesHandler(get_asgi_application()), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped: Playwright's loop must be gone before other (async) tests run in this process."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # refuse the test's own (synchronous) ORM calls; Django documents this switch for it.
    # https://docs.djangoproject.com/en/stable/topics/async/#async-safety
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def signed_in_page(browser, server_url, member):
    """A page whose browser holds the member's session cookie."""
    client = Client()
    client.force_login(member)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server_url}])
    page = context.new_page()
    errors: list[str] = []
    # Script errors, and failed requests other than the favicon nobody serves.
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.errors = errors
    yield page
    context.close()


AXE = Path(__file__).parent / "vendor" / "node_modules" / "axe-core" / "axe.min.js"  # installed by the Makefile
AXE_REPORT = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))
}))"""


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of the given impacts on the page as it is now. The script goes in
    through the DevTools protocol, which the page's Content-Security-Policy does not govern."""
    page.evaluate(AXE.read_text())
    return [v for v in page.evaluate(AXE_REPORT) if v["impact"] in impacts]


def signed_in_context(browser: Any, server_url: str, user: Any, **options: Any) -> Any:
    """A browser context holding `user`'s session cookie."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server_url}])
    return context
