"""The report page's forms for schedules, subscriptions and alerts (the admin has its own)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from reports.models import Report
from schedules.models import Alert, Schedule, Subscription


class ScheduleForm(forms.ModelForm[Schedule]):
    class Meta:
        model = Schedule
        fields = ["name", "kind", "cron", "interval_minutes", "timezone"]
        widgets = {"cron": forms.TextInput(attrs={"placeholder": "0 7 * * 1-5"})}


def limit_to_report(form: forms.ModelForm[Any], report: Report) -> None:
    """The schedule (and panel) fields offer only this report's."""
    for name, queryset in [("schedule", report.schedules.order_by("pk")), ("panel", report.panels.all())]:
        field = form.fields.get(name)
        if isinstance(field, forms.ModelChoiceField):
            field.queryset = queryset


class SubscriptionForm(forms.ModelForm[Subscription]):
    class Meta:
        model = Subscription
        fields = ["schedule", "users", "addresses", "attach_csv"]
        widgets = {"addresses": forms.Textarea(attrs={"rows": 2, "placeholder": "finance@example.com"})}

    def __init__(self, *args: Any, report: Report, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit_to_report(self, report)
        # Only people the report is shared with; the send checks again.
        people = get_user_model().objects.filter(Q(pk=report.owner_id) | Q(groups__reports=report), is_active=True)
        users = self.fields["users"]
        assert isinstance(users, forms.ModelMultipleChoiceField)
        users.queryset = people.distinct().order_by("username")
        users.required = False


class AlertForm(forms.ModelForm[Alert]):
    class Meta:
        model = Alert
        fields = ["schedule", "panel", "column", "condition", "threshold", "addresses", "webhook_url"]
        widgets = {"addresses": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, report: Report, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit_to_report(self, report)


def errors_text(form: forms.BaseForm) -> str:
    """Every error of a form as one sentence for a message."""
    parts = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        parts.append(f"{label or 'Form'}: {' '.join(str(error) for error in errors)}")
    return "; ".join(parts)
