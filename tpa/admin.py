from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from tpa.cache import bump_mappings_version, invalidate, stale_warning
from tpa.models import FieldMapping, IngestionFile, PipelineRun, PipelineStep, TargetColumn, TargetSchema, Tpa


class SavesMasterData(admin.ModelAdmin):  # type: ignore[type-arg]
    """Master data saved here invalidates the caches once the admin's transaction commits,
    and tells the person when the cache could not be reached (tpa.cache.invalidate)."""

    def _changed(self, request: HttpRequest) -> None:
        def after_commit() -> None:
            if warning := stale_warning(invalidate()):
                messages.warning(request, warning)

        transaction.on_commit(after_commit)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:  # type: ignore[type-arg]
        super().save_related(request, form, formsets, change)
        if isinstance(form.instance, Tpa):
            bump_mappings_version(form.instance.pk)
        self._changed(request)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        self._changed(request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        self._changed(request)


class TargetColumnInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TargetColumn
    extra = 0


@admin.register(TargetSchema)
class TargetSchemaAdmin(SavesMasterData):
    list_display = ["name", "version", "table_name", "key_column"]
    inlines = [TargetColumnInline]


class FieldMappingInline(admin.TabularInline):  # type: ignore[type-arg]
    model = FieldMapping
    extra = 0


@admin.register(Tpa)
class TpaAdmin(SavesMasterData):
    list_display = ["code", "name", "active", "target_schema", "contact_email"]
    list_filter = ["active", "target_schema"]
    search_fields = ["code", "name", "contact_name", "contact_email"]
    readonly_fields = ["mappings_version"]
    inlines = [FieldMappingInline]


@admin.register(IngestionFile)
class IngestionFileAdmin(admin.ModelAdmin):
    list_display = ["stage_path", "tpa", "status", "row_count", "size", "uploaded_by", "uploaded_at"]
    list_filter = ["status", "tpa"]
    search_fields = ["stage_path", "original_name", "sha256"]
    readonly_fields = ["stage_path", "sha256", "size", "row_count", "columns", "uploaded_by", "uploaded_at"]


class PipelineStepInline(admin.TabularInline):
    model = PipelineStep
    extra = 0
    can_delete = False
    readonly_fields = ["name", "status", "rows", "query_ids", "detail", "error", "started_at", "finished_at"]


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ["id", "tpa", "status", "triggered_by", "created_at", "finished_at"]
    list_filter = ["status", "tpa"]
    readonly_fields = ["files", "task_id", "mapping_snapshot", "started_at", "finished_at", "triggered_by"]
    inlines = [PipelineStepInline]
