from __future__ import annotations

from django.urls import path, register_converter

from reports import views


class ExportFormat:
    regex = "csv|xlsx"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ExportFormat, "export_format")

app_name = "reports"

urlpatterns = [
    path("", views.report_list, name="list"),
    path("<slug:slug>/", views.report_page, name="report"),
    path("<slug:slug>/stream/", views.report_stream, name="stream"),
    path("<slug:slug>/favourite", views.favourite, name="favourite"),
    path("<slug:slug>/panels/<int:panel_id>/", views.panel_fragment, name="panel"),
    path("<slug:slug>/panels/<int:panel_id>/export.<export_format:fmt>", views.export, name="export"),
]
