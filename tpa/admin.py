from __future__ import annotations

from django.contrib import admin

from tpa.models import FieldMapping, IngestionFile, PipelineRun, PipelineStep, TargetColumn, TargetSchema, Tpa


class TargetColumnInline(admin.TabularInline):
    model = TargetColumn
    extra = 0


@admin.register(TargetSchema)
class TargetSchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "table_name", "key_column"]
    inlines = [TargetColumnInline]


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    extra = 0


@admin.register(Tpa)
class TpaAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "active", "target_schema", "contact_email"]
    list_filter = ["active", "target_schema"]
    search_fields = ["code", "name", "contact_name", "contact_email"]
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
