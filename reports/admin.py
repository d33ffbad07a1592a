"""Editing reports: SQL is checked on save (one read-only statement, parameters that filters
provide), a panel's page shows a preview run with the filters' defaults, and staff browse
the query log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from project import cache
from reports import filters as filtering
from reports import runner
from reports.models import DataSource, Filter, Panel, QueryLog, Report, Tag
from reports.sql import parameter_problems

PREVIEW_ROWS = 20


def posted_parameters(data: Mapping[str, Any], prefix: str = "filters") -> set[str] | None:
    """The parameters the filter inline of the same form submission provides (None: no such inline)."""
    total = data.get(f"{prefix}-TOTAL_FORMS")
    if total is None:
        return None
    names: set[str] = set()
    for index in range(int(total)):
        if data.get(f"{prefix}-{index}-DELETE"):
            continue
        name = str(data.get(f"{prefix}-{index}-name", "")).strip()
        if name:
            kind = data.get(f"{prefix}-{index}-kind")
            names |= {f"{name}_from", f"{name}_to"} if kind == Filter.Kind.DATE_RANGE else {name}
    return names


def saved_parameters(report: Report | None) -> set[str]:
    if report is None or report.pk is None:
        return set()
    return {name for item in report.filters.all() for name in item.parameter_names}


def sql_problems(form: forms.ModelForm, parameters: set[str]) -> None:
    """Placeholders no filter provides (the filters may be in the same submission); whether the
    SQL is one read-only query is the model's own check (Panel.clean)."""
    if sql := form.cleaned_data.get("sql"):
        for problem in parameter_problems(sql, parameters):
            form.add_error("sql", problem)


class PanelInlineFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        parameters = posted_parameters(self.data)
        if parameters is None:
            parameters = saved_parameters(self.instance)
        for form in self.forms:
            if form.cleaned_data and not form.cleaned_data.get("DELETE"):
                sql_problems(form, parameters)


class FilterInline(admin.TabularInline):
    model = Filter
    extra = 0
    fields = ("order", "name", "label", "kind", "default", "required", "options_source", "options_sql")
    formfield_overrides = {
        Filter._meta.get_field("options_sql").__class__: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 40})}
    }


class PanelInline(admin.StackedInline):
    model = Panel
    formset = PanelInlineFormSet
    extra = 0
    show_change_link = True  # the panel's own page has the preview run
    fields = (
        ("title", "order"),
        "sql",
        ("source", "visualization", "width"),
        ("timeout", "cache_ttl", "stale_while_revalidate"),
        "columns",
        ("chart_x", "chart_y", "partial_last"),
    )
    formfield_overrides = {
        Panel._meta.get_field("sql").__class__: {
            "widget": forms.Textarea(attrs={"rows": 6, "cols": 90, "class": "sql"})
        },
        Panel._meta.get_field("columns").__class__: {"widget": forms.Textarea(attrs={"rows": 3, "cols": 90})},
    }


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name",)


@admin.register(DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "connection", "timeout", "pool_share")
    list_filter = ("kind",)


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "owner", "updated_at")
    search_fields = ("title", "slug", "description")
    list_filter = ("groups", "tags")
    prepopulated_fields = {"slug": ("title",)}
    filter_horizontal = ("groups", "tags")
    inlines = (FilterInline, PanelInline)
    actions = ("clear_cached_results",)
    view_on_site = True

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    @admin.action(description="Clear cached panel results and filter options (every report)")
    def clear_cached_results(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        try:
            cache.invalidate("panel-results")
            cache.invalidate("filter-options")
        except cache.CacheUnavailable as exc:
            self.message_user(request, f"Could not clear cached results: {exc}. Try again.", messages.ERROR)
            return
        self.message_user(request, "Cached panel results and filter options cleared.", messages.SUCCESS)


class PanelForm(forms.ModelForm):
    class Meta:
        model = Panel
        fields = (
            "report",
            "title",
            "sql",
            "source",
            "visualization",
            "order",
            "width",
            "timeout",
            "cache_ttl",
            "stale_while_revalidate",
            "columns",
            "chart_x",
            "chart_y",
            "partial_last",
        )
        widgets = {"sql": forms.Textarea(attrs={"rows": 12, "cols": 100, "class": "sql"})}

    def clean(self) -> dict[str, Any]:
        super().clean()
        sql_problems(self, saved_parameters(self.cleaned_data.get("report")))
        return self.cleaned_data


@admin.register(Panel)
class PanelAdmin(admin.ModelAdmin):
    form = PanelForm
    list_display = ("title", "report", "source", "visualization", "order")
    list_filter = ("source", "visualization", "report")
    search_fields = ("title", "sql")
    readonly_fields = ("preview",)
    list_select_related = ("report", "source")

    @admin.display(description="Preview (the filters’ defaults, fresh run)")
    def preview(self, panel: Panel) -> SafeString | str:
        if panel.pk is None:
            return "Save the panel to see a preview."
        # The runner is async and touches no lazy relation: load what it needs here.
        panel = Panel.objects.select_related("source").get(pk=panel.pk)
        items = list(Filter.objects.filter(report_id=panel.report_id))
        state = filtering.parse(items, filtering.ListMapping({}))
        if not state.is_valid:
            return "Give the required filters defaults to preview: " + "; ".join(
                f"{name}: {message}" for name, message in state.errors.items()
            )
        run = async_to_sync(runner.run_panel)(panel, state.params(), fresh=True)
        QueryLog.objects.bulk_create(
            runner.log_entries([run], user_id=None, report_id=panel.report_id, trigger=QueryLog.Trigger.ADMIN)
        )
        return render_to_string("reports/admin/preview.html", {"run": run, "rows": run.rows[:PREVIEW_ROWS]})


@admin.register(QueryLog)
class QueryLogAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user",
        "report",
        "panel",
        "trigger",
        "duration_ms",
        "rows",
        "cache_hit",
        "error_kind",
        "reference",
    )
    list_filter = ("trigger", "cache_hit", "error_kind", "source", "report")
    # A reference a person quotes from a failed panel finds its line, with the database's message.
    search_fields = ("reference", "error", "query_id", "panel__title", "report__title")
    date_hierarchy = "created_at"
    list_select_related = ("user", "report", "panel")
    readonly_fields = [field.name for field in QueryLog._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: QueryLog | None = None) -> bool:
        return False
