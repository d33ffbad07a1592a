"""The report as a PDF: the page's own panel templates, drawn by Chromium, printed by Playwright.

    pdf = await render_pdf(prepared, runs)

Runs in the task worker, never in the web process: the HTML comes from the runs the
schedule's refresh produced (the same rows, so the PDF and the page agree), with the
page's CSS and Chart.js inlined because `set_content` has no server to fetch them from.
Chromium is Debian's (settings.SCHEDULES_CHROMIUM), launched per PDF and closed after, so a
crash or a leak in one render never reaches the next; `SCHEDULES_PDF_TIMEOUT` bounds it.
"""

from __future__ import annotations

import asyncio
import datetime
from functools import cache
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone

from reports.runner import PanelRun
from reports.services import Prepared
from reports.templatetags.reports import panel_context

# Headless in a container: no sandbox (root), no GPU, nothing that calls home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
STATIC = ["css/fanout.css", "css/reports.css", "vendor/chart.umd.4.6.1.min.js", "schedules/print.js"]


class PdfError(Exception):
    """Chromium could not print the report; the message says why."""


@cache
def _static(name: str) -> str:
    found = finders.find(name)
    if not found:
        raise PdfError(f"static file {name} is missing")
    return Path(str(found)).read_text()


def print_html(prepared: Prepared, runs: list[PanelRun], *, generated_at: datetime.datetime | None = None) -> str:
    """The page as it prints: every panel with its rows, charts drawn by the inlined script."""
    report, state = prepared.report, prepared.state
    by_id = {run.panel_id: run for run in runs}
    panels = [panel_context(report, panel, by_id[panel.pk], state) for panel in prepared.panels if panel.pk in by_id]
    shown = [
        (item.label, ", ".join(value for value in state.shown.get(name, []) if value))
        for item in prepared.filters
        for name in item.parameter_names
    ]
    return render_to_string(
        "schedules/print.html",
        {
            "report": report,
            "panels": panels,
            "filters": [(label, value) for label, value in shown if value],
            "generated_at": generated_at or timezone.now(),
            "styles": _static("css/fanout.css") + _static("css/reports.css"),
            "chart_js": _static("vendor/chart.umd.4.6.1.min.js"),
            "print_js": _static("schedules/print.js"),
        },
    )


async def render_pdf(prepared: Prepared, runs: list[PanelRun]) -> bytes:
    try:
        async with asyncio.timeout(settings.SCHEDULES_PDF_TIMEOUT):
            # Rendering a few thousand table cells takes a while (0.8 s for the 9-panel claims report).
            html = await sync_to_async(print_html, thread_sensitive=False)(prepared, runs)
            return await html_to_pdf(html)
    except TimeoutError:
        raise PdfError(f"the PDF took longer than {settings.SCHEDULES_PDF_TIMEOUT:g} s to render") from None


async def html_to_pdf(html: str) -> bytes:
    from playwright.async_api import Error, async_playwright

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=settings.SCHEDULES_CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                await page.set_content(html, wait_until="load")
                # print.js sets this once every chart is drawn (Chart.js draws without animation).
                await page.wait_for_function("window.fanoutPrintReady === true")
                await page.emulate_media(media="print")
                return await page.pdf(format="A4", landscape=True, print_background=True, prefer_css_page_size=True)
            finally:
                await browser.close()
    except Error as exc:
        raise PdfError(f"Chromium failed: {exc.message.splitlines()[0]}") from exc
