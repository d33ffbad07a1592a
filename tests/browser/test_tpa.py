from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from playwright.sync_api import expect

from tests.tpa.conftest import claims_file, file_totals
from tpa.models import PipelineRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def install_demo_reports() -> None:
    """`load_demo_reports` on a thread of its own: this one runs Playwright's event loop."""

    def install() -> None:
        try:
            call_command("load_demo_reports", stdout=io.StringIO())
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(install).result(timeout=120)


def test_it_takes_a_claim_file_from_upload_to_gold_through_the_pages(
    browser,
    server_url,
    owner,
    make_tpa,
    tmp_path,
) -> None:
    tpa = make_tpa()
    install_demo_reports()  # the claims report, which reads gold
    client = Client()
    client.force_login(owner)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server_url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{server_url}/tpa/{tpa.code}/")
    expect(page.get_by_role("button", name="Run the pipeline on 0 waiting files")).to_be_disabled()
    expect(page.locator("#cannot-run")).to_have_text("No file is waiting: upload one first.")
    upload = tmp_path / "claims-2026-01.csv"
    data = claims_file(rows=20)
    claims, paid = file_totals(data)
    upload.write_bytes(data.getvalue())
    page.set_input_files("input[name=file]", str(upload))
    page.get_by_role("button", name="Upload to the stage").click()
    expect(page.locator(".messages")).to_contain_text("20 rows")

    page.get_by_role("button", name="Run the pipeline on 1 waiting file").click()
    page.wait_for_url(f"**/tpa/{tpa.code}/runs/*/")
    expect(page.locator("main")).to_contain_text("queued")

    # The real worker, in its own process (this thread runs Playwright's event loop).
    db = settings.DATABASES["default"]
    subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-reload", "--no-startup-delay", "--interval", "0.1"],
        env={
            **os.environ,
            "DATABASE_URL": f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={db['HOST']}",
        },
        cwd=settings.BASE_DIR,
        check=True,
        timeout=120,
    )

    expect(page.locator("main")).to_contain_text("succeeded", timeout=20_000)
    steps = page.locator("table").first
    for step in ("bronze", "silver", "gold"):
        expect(steps).to_contain_text(step)
    run = PipelineRun.objects.get(tpa=tpa)
    assert {step.name: step.rows for step in run.steps.all()}["silver"] == 20

    page.goto(f"{server_url}/tpa/{tpa.code}/")
    expect(page.locator("main")).to_contain_text("transformed")
    expect(page.locator("main")).to_contain_text("SERVICE_MONTH", timeout=20_000)  # the gold preview

    # The claims report reads gold: the TPA is a choice of its filter, and the file's claims show.
    page.goto(f"{server_url}/reports/claims-overview/?period_from=2026-01-01&period_to=2026-12-31")
    page.select_option("#filter-tpa", tpa.code)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"**tpa={tpa.code}**")
    claims_panel = page.locator(".panel", has=page.get_by_role("heading", name="Claims", exact=True))
    expect(claims_panel.locator(".big-number .value")).to_have_text(f"{claims:,}", timeout=20_000)
    paid_panel = page.locator(".panel", has=page.get_by_role("heading", name="Total paid", exact=True))
    expect(paid_panel.locator(".big-number .value")).to_have_text(f"${paid:,.2f}", timeout=20_000)
    assert errors == []
    context.close()
