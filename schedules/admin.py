"""Staff manage every report's schedules here; owners do the same on the report page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from schedules.models import Alert, Delivery, Run, Schedule, Subscription
from schedules.scheduler import AlreadyQueued, run_now


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    extra = 0
    autocomplete_fields = ["owner"]
    filter_horizontal = ["users"]


class AlertInline(admin.StackedInline):
    model = Alert
    extra = 0
    autocomplete_fields = ["owner"]
    readonly_fields = ["state", "last_value"]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    list_display = ["__str__", "report", "owner", "kind", "enabled", "next_run_at", "last_run_at"]
    list_filter = ["enabled", "kind"]
    search_fields = ["name", "report__slug", "report__title"]
    autocomplete_fields = ["report", "owner"]
    readonly_fields = ["last_run_at", "note"]
    inlines = [SubscriptionInline, AlertInline]
    actions = ["run_selected_now"]

    @admin.action(description="Run the selected schedules now")
    def run_selected_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        queued, waiting = 0, 0
        for schedule in queryset:
            try:
                run_now(schedule)
                queued += 1
            except AlreadyQueued:
                waiting += 1
        note = f"; {waiting} had a run waiting already" if waiting else ""
        self.message_user(request, f"{queued} run(s) queued{note}.", messages.SUCCESS)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    readonly_fields = [
        "kind",
        "purpose",
        "recipients",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "error",
    ]
    fields = tuple(readonly_fields)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin[Run]):
    list_display = ["created_at", "report", "schedule", "trigger", "status", "duration_ms", "error"]
    list_filter = ["status", "trigger"]
    search_fields = ["report__slug", "error"]
    readonly_fields = [field.name for field in Run._meta.fields if field.name != "pdf"]
    exclude = ["pdf"]
    inlines = [DeliveryInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    list_display = ["created_at", "kind", "purpose", "recipients", "status", "attempts", "error"]
    list_filter = ["status", "kind", "purpose"]
    readonly_fields = [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
