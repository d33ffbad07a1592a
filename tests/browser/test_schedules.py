from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from tests.schedules.conftest import make_claims_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_owner_schedules_the_report_subscribes_and_sees_the_run_in_its_history(
    browser, server_url, owner, analysts, tmp_path
) -> None:
    make_claims_report(owner, groups=[analysts], title="Claims overview")
    client = Client()
    client.force_login(owner)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server_url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{server_url}/reports/claims/")
    section = page.locator("#schedules")
    expect(section).to_contain_text("No schedule refreshes the report with these filters.")
    section.get_by_text("Schedules, subscriptions and alerts").click()

    schedule_form = section.locator("form[data-form=schedule]")
    schedule_form.get_by_label("Kind").select_option("interval")
    schedule_form.get_by_label("Interval minutes").fill("60")
    schedule_form.get_by_role("button", name="Add schedule").click()
    expect(page.locator(".messages")).to_contain_text("Scheduled every 60 min")

    subscription_form = section.locator("form[data-form=subscription]")
    subscription_form.get_by_label("Addresses").fill("finance@example.com")
    subscription_form.get_by_role("button", name="Subscribe").click()
    expect(page.locator(".messages")).to_contain_text("Subscribed: the PDF goes out every 60 min.")
    expect(section.locator("[data-subscription]")).to_contain_text("alice@example.com, finance@example.com")

    section.get_by_role("button", name="Run now").click()
    expect(page.locator(".messages")).to_contain_text("queued; its outcome shows in the history below")
    expect(section.locator("[data-run-history]")).to_contain_text("Queued")

    # The real worker, in its own process; the demo's mail backend writes to a folder.
    db = settings.DATABASES["default"]
    mail = tmp_path / "mail"
    subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-reload", "--no-startup-delay", "--interval", "0.1"],
        env={
            **os.environ,
            "DATABASE_URL": f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={db['HOST']}",
            "EMAIL_FILE_PATH": str(mail),
        },
        cwd=settings.BASE_DIR,
        check=True,
        timeout=180,
    )

    page.reload()
    history = section.locator("[data-run-history]")
    expect(history).to_contain_text("Done")
    expect(history).to_contain_text("E-mail (subscription) to alice@example.com, finance@example.com: sent")
    [message] = list(mail.iterdir())
    assert "Subject: Claims overview: " in message.read_text()
    assert errors == []
