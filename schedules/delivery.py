"""Sending one Delivery: check, send, and on failure retry with backoff, then give up visibly.

    await attempt(delivery_id)      # the `deliver` task

A subscription's e-mail re-checks at send time that its owner still sees the report (and
sends only to the recipients who do); one who lost access stops the subscription with a
note, and nothing is sent. A failure is retried SCHEDULES_DELIVERY_ATTEMPTS times in all,
waiting SCHEDULES_RETRY_BASE_SECONDS * 2^n between tries, then marked failed with its error.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from reports.models import Report
from schedules.models import Delivery, Run, Subscription
from schedules.runs import can_see, lost_access
from schedules.transport import DeliveryError, Refused, csv_files, post_webhook, send_mail

logger = logging.getLogger(__name__)


class Skip(Exception):
    """Nothing may be sent; the message is why."""


def backoff(attempts: int) -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SCHEDULES_RETRY_BASE_SECONDS * 2 ** (attempts - 1))


def report_url(report: Report, run: Run) -> str:
    from urllib.parse import urlencode

    query = urlencode([(key, value) for key, values in run.filters.items() for value in values])
    return settings.SITE_URL.rstrip("/") + report.get_absolute_url() + (f"?{query}" if query else "")


async def attempt(delivery_id: int) -> str:
    delivery = await Delivery.objects.select_related("run__report", "subscription__owner", "alert").aget(pk=delivery_id)
    if delivery.status not in (Delivery.Status.PENDING, Delivery.Status.RETRYING):
        return str(delivery.status)  # a duplicate task: sent or settled already
    delivery.attempts += 1
    try:
        await _send(delivery)
    except Skip as skipped:
        delivery.status, delivery.error = Delivery.Status.SKIPPED, str(skipped)
    except Refused as refused:
        delivery.status, delivery.error = Delivery.Status.FAILED, f"refused: {refused}"
    except Exception as exc:  # DeliveryError, or a bug: either way counted, retried, and shown
        if not isinstance(exc, DeliveryError):
            logger.exception("delivery %s failed unexpectedly", delivery.pk)
        delivery.error = f"attempt {delivery.attempts}: {exc if isinstance(exc, DeliveryError) else repr(exc)}"
        if delivery.attempts >= settings.SCHEDULES_DELIVERY_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
            logger.warning("delivery %s failed for good: %s", delivery.pk, exc)
        else:
            delivery.status = Delivery.Status.RETRYING
            delivery.next_attempt_at = timezone.now() + backoff(delivery.attempts)
    else:
        delivery.status, delivery.sent_at, delivery.error = Delivery.Status.SENT, timezone.now(), ""
        delivery.next_attempt_at = None
    await delivery.asave()
    if delivery.status == Delivery.Status.RETRYING:
        from schedules.tasks import deliver

        await deliver.using(run_after=delivery.next_attempt_at).aenqueue(delivery.pk)
    return str(delivery.status)


async def _send(delivery: Delivery) -> None:
    if delivery.kind == Delivery.Kind.WEBHOOK:
        assert delivery.alert is not None, "a webhook belongs to an alert"
        await post_webhook(
            delivery.recipients, delivery.alert.webhook_secret, delivery.payload, delivery_id=delivery.pk
        )
    elif delivery.purpose == Delivery.Purpose.SUBSCRIPTION:
        await _send_subscription(delivery)
    else:
        await _send_alert_mail(delivery)


async def _send_subscription(delivery: Delivery) -> None:
    subscription, run = delivery.subscription, delivery.run
    if subscription is None or not subscription.active:
        raise Skip("The subscription was removed or stopped before this was sent.")
    if not await can_see(subscription.owner, run):
        note = lost_access(subscription.owner, "subscription")
        await Subscription.objects.filter(pk=subscription.pk).aupdate(active=False, note=note)
        raise Skip(note)
    users = [user async for user in subscription.users.filter(is_active=True) if await can_see(user, run)]
    recipients = subscription.recipient_list(users)
    delivery.recipients = ", ".join(recipients)
    if not recipients:
        raise Skip("No recipient with an e-mail address.")
    report = run.report
    attachments: list[tuple[str, bytes, str]] = []
    if run.pdf:
        attachments.append((f"{report.slug}.pdf", bytes(run.pdf), "application/pdf"))
    if subscription.attach_csv:
        attachments += [(name, content, "text/csv") for name, content in csv_files(run.panels, report.slug)]
    await send_mail(f"{report.title}: {run.created_at:%Y-%m-%d %H:%M}", subscription_body(run), recipients, attachments)


def subscription_body(run: Run) -> str:
    lines = [f"{run.report.title}, as of {run.started_at or run.created_at:%Y-%m-%d %H:%M %Z}.", ""]
    for panel in run.panels:
        status = f"failed: {panel['error']}" if panel["error"] else f"{panel['row_count']} rows"
        lines.append(f"- {panel['title']}: {status}")
    lines += ["", "The PDF of the page and each panel's CSV are attached.", f"Open it: {report_url(run.report, run)}"]
    return "\n".join(lines)


async def _send_alert_mail(delivery: Delivery) -> None:
    payload: dict[str, Any] = delivery.payload
    fired = delivery.purpose == Delivery.Purpose.ALERT_FIRED
    alert = delivery.alert
    condition = alert.describe() if alert else payload["condition"]
    what = f"{payload['panel']} · {payload['column']} {condition}"
    subject = f"{'Alert' if fired else 'Back to normal'}: {payload['report_title']}: {what}"
    body = "\n".join(
        [
            f"{payload['column']} of “{payload['panel']}” is {payload['value']}"
            + (f" (it {condition})." if fired else f"; the condition “{condition}” no longer holds."),
            f"Previous value: {payload['previous_value']}",
            f"Checked at {payload['checked_at']}.",
            "",
            f"Open the report: {report_url(delivery.run.report, delivery.run)}",
        ]
    )
    await send_mail(subject, body, [address.strip() for address in delivery.recipients.split(",") if address.strip()])
