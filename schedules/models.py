"""Schedules on reports, what each run sends, and the history of runs and deliveries.

A Schedule says when (a cron expression or an interval, in a time zone) and with which
filter values a report runs. Each run refreshes the report's panel-results cache, then
sends the schedule's subscriptions (PDF and CSV by e-mail) and checks its alerts. Every
message or webhook call is a Delivery, retried with backoff and kept with its outcome.
"""

from __future__ import annotations

import datetime
import decimal
import re
import secrets
import zoneinfo
from typing import Any

from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, validate_email
from django.db import models
from django.utils import timezone

from reports.models import Panel, Report, User

ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


def validate_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{name!r} is not a time zone; use a name such as Europe/Paris or UTC.") from None


def validate_cron(expression: str) -> None:
    if expression and not croniter.is_valid(expression):
        raise ValidationError(
            f"{expression!r} is not a cron expression; "
            "use five fields: minute hour day month weekday, e.g. 0 7 * * 1-5."
        )


def split_addresses(text: str) -> list[str]:
    return [address for address in ADDRESS_SEPARATORS.split(text.strip()) if address]


def validate_addresses(text: str) -> None:
    for address in split_addresses(text):
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not an e-mail address.") from None


def user_is_report_owner(report: Report, user: User) -> bool:
    """Who may edit a report's schedules on its page (staff also have the admin)."""
    superuser = getattr(user, "is_superuser", False)
    return bool(user.is_authenticated and user.is_active and (superuser or report.owner_id == user.pk))


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    def due(self, now: datetime.datetime) -> ScheduleQuerySet:
        return self.filter(enabled=True, next_run_at__lte=now)

    def for_report(self, report: Report) -> ScheduleQuerySet:
        return self.filter(report=report).select_related("owner").order_by("pk")


class Schedule(models.Model):
    class Kind(models.TextChoices):
        CRON = "cron", "Cron expression"
        INTERVAL = "interval", "Every N minutes"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="schedules")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="report_schedules",
        help_text="The report runs as this user; it stops if they lose access.",
    )
    name = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CRON)
    cron = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_cron],
        help_text="minute hour day month weekday, e.g. 0 7 * * 1-5",
    )
    interval_minutes = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    filters = models.JSONField(
        default=dict, blank=True, help_text='Filter values as on the page, e.g. {"tpa": ["ACME"]}; empty: defaults.'
    )
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why it stopped, when it did.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["report", "pk"]
        constraints = [
            # A double-clicked "Add schedule" must not send everything twice.
            models.UniqueConstraint(
                fields=["report", "kind", "cron", "interval_minutes", "timezone", "filters"],
                name="schedules_schedule_unique_timing",
                nulls_distinct=False,
                violation_error_message="This report already has a schedule at these times with these filters.",
            )
        ]

    def __str__(self) -> str:
        return self.name or f"{self.report} · {self.describe()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.next_run_at is None and self.enabled:
            self.next_run_at = self.next_after(timezone.now())
        super().save(*args, **kwargs)

    def describe(self) -> str:
        if self.kind == self.Kind.INTERVAL:
            return f"every {self.interval_minutes} min"
        return f"cron {self.cron} ({self.timezone})"

    def clean(self) -> None:
        if self.kind == self.Kind.CRON and not self.cron:
            raise ValidationError({"cron": "Give a cron expression, e.g. 0 7 * * 1-5."})
        if self.kind == self.Kind.INTERVAL and not self.interval_minutes:
            raise ValidationError({"interval_minutes": "Give the number of minutes between runs."})
        if not isinstance(self.filters, dict) or not all(
            isinstance(values, list) and all(isinstance(value, str) for value in values)
            for values in self.filters.values()
        ):
            raise ValidationError({"filters": 'Give filter values as {"name": ["value", ...]}.'})

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first run time strictly after `moment`: a scheduler that was down catches up
        with one run, then carries on from now instead of replaying every missed tick."""
        if self.kind == self.Kind.INTERVAL:
            step = datetime.timedelta(minutes=self.interval_minutes or 1)
            anchor = self.next_run_at or moment
            if anchor > moment:
                return anchor
            return anchor + step * ((moment - anchor) // step + 1)
        local = moment.astimezone(zoneinfo.ZoneInfo(self.timezone))
        following: datetime.datetime = croniter(self.cron, local).get_next(datetime.datetime)
        return following.astimezone(datetime.UTC)

    def period_seconds(self) -> float | None:
        """Seconds between two runs (for cron, the two after the next), None when not scheduled."""
        if self.next_run_at is None:
            return None
        following = self.next_after(self.next_run_at)
        return (following - self.next_run_at).total_seconds()


class Subscription(models.Model):
    """The report as a PDF with the panels' CSV files, mailed on each run of its schedule."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="subscriptions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="report_subscriptions",
        help_text="Sends only what this user may see, checked at every send.",
    )
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+", help_text="Recipients.")
    addresses = models.TextField(blank=True, validators=[validate_addresses], help_text="More recipients, one a line.")
    attach_csv = models.BooleanField("attach CSV", default=True)
    active = models.BooleanField(default=True)
    note = models.TextField(blank=True, help_text="Why it stopped, when it did.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.schedule.report} to {', '.join(self.recipient_list()) or 'nobody'}"

    def recipient_list(self, users: list[Any] | None = None) -> list[str]:
        """Addresses, the owner's first; users without an address are left out."""
        people = [self.owner, *(self.users.all() if users is None else users)]
        found = [person.email for person in people if person.email] + split_addresses(self.addresses)
        return list(dict.fromkeys(found))


class Alert(models.Model):
    """A condition on a panel's first-row value, checked on each run of its schedule."""

    class Condition(models.TextChoices):
        ABOVE = "above", "is above"
        BELOW = "below", "is below"
        EQUAL = "equal", "equals"
        CHANGED = "changed", "changed"

    class State(models.TextChoices):
        UNKNOWN = "unknown", "Not checked yet"
        OK = "ok", "OK"
        TRIGGERED = "triggered", "Triggered"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="alerts")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_alerts")
    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="+")
    column = models.CharField(max_length=200, help_text="A column of the panel's first row.")
    condition = models.CharField(max_length=10, choices=Condition.choices, default=Condition.ABOVE)
    threshold = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    addresses = models.TextField(blank=True, validators=[validate_addresses], help_text="Also e-mail these.")
    webhook_url = models.URLField(blank=True, max_length=500)
    webhook_secret = models.CharField(
        max_length=100, blank=True, help_text="Signs each webhook body (HMAC-SHA256); made for you when empty."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.UNKNOWN)
    last_value = models.JSONField(null=True, blank=True)
    active = models.BooleanField(default=True)
    note = models.TextField(blank=True, help_text="Why it stopped, when it did.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.panel} · {self.column} {self.describe()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.webhook_url and not self.webhook_secret:
            self.webhook_secret = secrets.token_urlsafe(32)
        super().save(*args, **kwargs)

    def describe(self) -> str:
        if self.condition == self.Condition.CHANGED:
            return "changed"
        return f"{self.get_condition_display()} {self.threshold_text}"

    @property
    def threshold_text(self) -> str:
        """10000, not 10000.000000 or 1E+4."""
        return "" if self.threshold is None else f"{self.threshold.normalize():f}"

    def clean(self) -> None:
        if self.condition != self.Condition.CHANGED and self.threshold is None:
            raise ValidationError({"threshold": "Give the number to compare with."})
        if self.panel_id and self.schedule_id and self.panel.report_id != self.schedule.report_id:
            raise ValidationError({"panel": "Choose a panel of the schedule's report."})

    def holds(self, value: Any) -> bool:
        """Whether the condition is true for `value` (compared with the value last seen for `changed`)."""
        if self.condition == self.Condition.CHANGED:
            return self.last_value is not None and value != self.last_value
        number = as_number(value)
        if number is None or self.threshold is None:
            return False
        if self.condition == self.Condition.ABOVE:
            return number > self.threshold
        if self.condition == self.Condition.BELOW:
            return number < self.threshold
        return number == self.threshold


def as_number(value: Any) -> decimal.Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None


class RunQuerySet(models.QuerySet["Run"]):
    def for_history(self) -> RunQuerySet:
        return self.select_related("schedule", "report", "requested_by").prefetch_related("deliveries")


class Run(models.Model):
    """One run of a schedule (or one PDF asked for from the report page)."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "On schedule"
        MANUAL = "manual", "Run now"
        PDF = "pdf", "PDF download"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, null=True, blank=True, related_name="runs")
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="schedule_runs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    due_at = models.DateTimeField(null=True, blank=True, help_text="The scheduled time this run is for.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    panels = models.JSONField(default=list, blank=True, help_text="Each panel's rows, time and error.")
    error = models.TextField(blank=True)
    pdf = models.BinaryField(null=True, blank=True, editable=False)
    pdf_ms = models.FloatField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A due time is run once, however many schedulers claimed it at once.
            models.UniqueConstraint(fields=["schedule", "due_at"], name="schedules_run_once_per_due_time")
        ]

    def __str__(self) -> str:
        return f"{self.report} {self.get_trigger_display()} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class Delivery(models.Model):
    """One e-mail or webhook call, with its attempts: retried with backoff, then failed."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Purpose(models.TextChoices):
        SUBSCRIPTION = "subscription", "Subscription"
        ALERT_FIRED = "alert-fired", "Alert fired"
        ALERT_CLEARED = "alert-cleared", "Alert cleared"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not sent"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    alert = models.ForeignKey(Alert, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    recipients = models.TextField(help_text="Addresses, or the webhook URL.")
    payload = models.JSONField(default=dict, blank=True, help_text="What an alert sends.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipients}: {self.get_status_display()}"
