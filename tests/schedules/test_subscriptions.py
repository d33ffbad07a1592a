"""Subscriptions: the report's PDF and CSV files by e-mail, to those who may see it, or to nobody."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from pypdf import PdfReader

from schedules.models import Delivery, Run, Subscription
from tests.schedules.conftest import (
    Inbox,
    due_now,
    make_claims_report,
    make_schedule,
    make_subscription,
    run_due,
    work_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def attachments(message) -> dict[str, Any]:
    """Each attachment by name: bytes for the PDF, text for the CSV files."""
    return {part.get_filename(): part.get_content() for part in message.iter_attachments()}


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_it_mails_a_pdf_holding_the_reports_numbers_and_each_panels_csv(owner, analysts, member, smtp: Inbox):
    report = make_claims_report(owner, groups=[analysts], title="Claims overview")
    schedule = make_schedule(report)
    make_subscription(schedule, member, addresses="finance@example.com")
    due_now(schedule)

    [run] = run_due()
    assert run.status == Run.Status.DONE, run.error
    [message] = smtp.wait_for(1)

    assert message["Subject"].startswith("Claims overview: ")
    assert sorted(smtp.envelopes[0][1]) == ["bob@example.com", "finance@example.com"]
    files = attachments(message)
    assert sorted(files) == ["claims-paid-by-region.csv", "claims-total-paid.csv", "claims.pdf"]
    text = pdf_text(files["claims.pdf"])
    assert "Claims overview" in text
    assert "6,551" in text  # the big number, as the page shows it
    for row in ["North 1,250", "South 980", "East 4,321"]:  # the table's rows, as the page shows them
        assert row in text
    assert "Region Paid" in text  # and its column headings
    rows = list(csv.reader(io.StringIO(files["claims-paid-by-region.csv"])))
    assert rows == [["region", "paid"], ["North", "1250"], ["South", "980"], ["East", "4321"]]
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts, delivery.recipients) == (
        "sent",
        1,
        "bob@example.com, finance@example.com",
    )


def test_a_subscriber_who_lost_access_gets_nothing_and_the_subscription_stops_with_a_note(
    owner, analysts, member, smtp: Inbox
):
    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    subscription = make_subscription(schedule, member)
    member.groups.remove(analysts)
    due_now(schedule)

    [run] = run_due()
    assert run.status == Run.Status.DONE
    subscription.refresh_from_db()
    assert not subscription.active
    assert "bob may no longer see this report" in subscription.note
    [delivery] = Delivery.objects.filter(run=run)
    assert (delivery.status, delivery.error) == ("skipped", subscription.note)
    assert smtp.messages == []
    assert not run.pdf  # nothing rendered for nobody


def test_it_sends_only_to_recipients_who_may_see_the_report(owner, analysts, member, outsider, smtp: Inbox):
    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    make_subscription(schedule, owner, users=[member, outsider])
    due_now(schedule)

    run_due()
    smtp.wait_for(1)
    assert sorted(smtp.envelopes[0][1]) == ["alice@example.com", "bob@example.com"]


def test_it_rechecks_access_at_send_time(owner, analysts, member, smtp: Inbox):
    from asgiref.sync import async_to_sync

    from schedules.runs import execute
    from schedules.scheduler import claim_due

    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    subscription = make_subscription(schedule, member)
    due_now(schedule)
    [run] = claim_due()
    async_to_sync(execute)(run.pk)  # rendered and queued while bob could see it
    member.groups.remove(analysts)

    work_until(lambda: Delivery.objects.get(run=run).status != "pending", "the delivery settled")
    assert Delivery.objects.get(run=run).status == "skipped"
    assert smtp.messages == []
    assert not Subscription.objects.get(pk=subscription.pk).active


def test_a_failing_mail_server_is_retried_with_backoff_then_shown_failed(owner, settings, tmp_path):
    from devtools.services import free_port

    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 5},  # nobody listens
        }
    }
    settings.SCHEDULES_RETRY_BASE_SECONDS = 0.05
    settings.SCHEDULES_DELIVERY_ATTEMPTS = 3
    schedule = make_schedule(make_claims_report(owner))
    make_subscription(schedule, owner)
    due_now(schedule)

    [run] = run_due()
    delivery = Delivery.objects.filter(run=run)
    work_until(lambda: delivery.get().status == "failed", "the delivery given up")
    failed = delivery.get()
    assert failed.attempts == 3
    assert failed.error.startswith("attempt 3: ConnectionRefusedError")
    assert failed.sent_at is None
