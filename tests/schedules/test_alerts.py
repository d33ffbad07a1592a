"""Alerts: one notification when a value crosses its line, one when it clears, by e-mail and
a signed webhook; never a storm."""

from __future__ import annotations

import pytest

from reports.models import Panel
from schedules.models import Alert, Delivery, Run
from tests.schedules.conftest import (
    Inbox,
    WebhookReceiver,
    due_now,
    make_alert,
    make_claims_report,
    make_schedule,
    run_due,
    work_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def set_total(report, total: int) -> None:
    # Saved as an edit in the admin is: every process then reads the report's definition again.
    panel = Panel.objects.get(report=report, title="Total paid")
    panel.sql = f"SELECT {total} AS total_paid, 3 AS regions"
    panel.save()


def check(schedule) -> Run:
    due_now(schedule)
    [run] = run_due()
    assert run.status == Run.Status.DONE, run.error
    return run


def test_it_fires_once_on_crossing_and_once_on_clearing_by_email_and_webhook(
    owner, smtp: Inbox, webhook: WebhookReceiver
):
    report = make_claims_report(owner, title="Claims")
    schedule = make_schedule(report)
    alert = make_alert(
        schedule,
        owner,
        condition=Alert.Condition.ABOVE,
        threshold=10000,
        webhook_url=webhook.url,
        addresses="oncall@example.com",
    )
    webhook.secret = alert.webhook_secret

    set_total(report, 6551)
    check(schedule)  # below the line: nothing to say
    set_total(report, 12000)
    check(schedule)  # crossed
    check(schedule)  # still above: no second notification
    set_total(report, 9000)
    check(schedule)  # cleared
    check(schedule)

    hooks = webhook.wait_for(2)
    messages = smtp.wait_for(2)
    assert [hook.payload["state"] for hook in hooks] == ["triggered", "ok"]
    assert [(hook.payload["value"], hook.payload["previous_value"]) for hook in hooks] == [(12000, 6551), (9000, 12000)]
    assert all(webhook.verified(hook) for hook in hooks)
    assert hooks[0].payload["threshold"] == "10000" and hooks[0].payload["column"] == "total_paid"
    assert [message["Subject"] for message in messages] == [
        "Alert: Claims: Total paid · total_paid is above 10000",
        "Back to normal: Claims: Total paid · total_paid is above 10000",
    ]
    assert sorted(smtp.envelopes[0][1]) == ["alice@example.com", "oncall@example.com"]
    assert "total_paid of “Total paid” is 12000" in messages[0].get_content()
    alert.refresh_from_db()
    assert (alert.state, alert.last_value) == ("ok", 9000)
    assert len(webhook.calls) == 2 and len(smtp.messages) == 2
    assert Delivery.objects.filter(status="sent").count() == 4


def test_a_changed_alert_fires_when_the_value_moves(owner, smtp: Inbox):
    report = make_claims_report(owner)
    schedule = make_schedule(report)
    make_alert(schedule, owner, condition=Alert.Condition.CHANGED)
    set_total(report, 100)
    check(schedule)  # first reading: nothing to compare with
    check(schedule)
    set_total(report, 101)
    check(schedule)
    [message] = smtp.wait_for(1)
    assert message["Subject"].startswith("Alert: ")
    assert "Previous value: 100" in message.get_content()


def test_a_forged_or_refused_webhook_is_retried_then_shown_failed(owner, settings, webhook: WebhookReceiver):
    settings.SCHEDULES_RETRY_BASE_SECONDS = 0.05
    settings.SCHEDULES_DELIVERY_ATTEMPTS = 3
    webhook.answers = [500, 503]  # the receiver is having a bad minute, then takes it
    report = make_claims_report(owner)
    schedule = make_schedule(report)
    alert = make_alert(schedule, owner, threshold=1, webhook_url=webhook.url)
    owner.email = ""
    owner.save()
    webhook.secret = alert.webhook_secret

    run = check(schedule)
    delivery = Delivery.objects.filter(run=run, kind="webhook")
    work_until(lambda: delivery.get().status in ("sent", "failed"), "the webhook settled")
    sent = delivery.get()
    assert (sent.status, sent.attempts, sent.error) == ("sent", 3, "")
    hooks = webhook.wait_for(3)
    assert len({hook.headers["x-fanout-delivery"] for hook in hooks}) == 1  # one delivery id: receivers dedupe
    assert all(webhook.verified(hook) for hook in hooks)

    webhook.answers = [500] * 3
    webhook.calls.clear()
    set_total(report, 0)
    run = check(schedule)
    cleared = Delivery.objects.filter(run=run, kind="webhook")
    work_until(lambda: cleared.get().status in ("sent", "failed"), "the webhook settled")
    failed = cleared.get()
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.error == "attempt 3: the webhook answered 500: "


def test_a_webhook_that_hangs_is_cut_at_its_deadline(owner, settings):
    import socket

    settings.SCHEDULES_WEBHOOK_TIMEOUT = 0.5
    settings.SCHEDULES_WEBHOOK_PRIVATE_OK = True
    settings.SCHEDULES_DELIVERY_ATTEMPTS = 1
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        report = make_claims_report(owner)
        schedule = make_schedule(report)
        owner.email = ""
        owner.save()
        make_alert(schedule, owner, threshold=1, webhook_url=f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        run = check(schedule)
        delivery = Delivery.objects.filter(run=run, kind="webhook")
        work_until(lambda: delivery.get().status == "failed", "the webhook given up")
    assert delivery.get().error == "attempt 1: no answer within 0.5 s"


def test_an_alert_whose_owner_lost_access_stops_with_a_note(owner, analysts, member, smtp: Inbox):
    report = make_claims_report(owner, groups=[analysts])
    schedule = make_schedule(report)
    alert = make_alert(schedule, member, threshold=1)
    member.groups.remove(analysts)
    check(schedule)
    alert.refresh_from_db()
    assert not alert.active and "bob may no longer see this report" in alert.note
    assert alert.state == "unknown"
    assert smtp.messages == []


def test_a_webhook_to_a_private_address_is_refused_without_retries(owner, settings):
    settings.SCHEDULES_RETRY_BASE_SECONDS = 0.05
    report = make_claims_report(owner)
    schedule = make_schedule(report)
    owner.email = ""
    owner.save()
    make_alert(schedule, owner, threshold=1, webhook_url="http://127.0.0.1:6379/")  # the app's own Redis, say
    run = check(schedule)
    delivery = Delivery.objects.get(run=run, kind="webhook")
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == ("refused: 127.0.0.1 is 127.0.0.1, a private address; webhooks go to public hosts only.")
