from __future__ import annotations

from django.urls import path

from tpa import views

app_name = "tpa"

urlpatterns = [
    path("", views.tpa_index, name="index"),
    path("queue/", views.processing_queue, name="queue"),
    path("<str:code>/", views.tpa_detail, name="detail"),
    path("<str:code>/upload", views.tpa_upload, name="upload"),
    path("<str:code>/mappings/", views.edit_mappings, name="mappings"),
    path("<str:code>/runs/", views.run_start, name="start_run"),
    path("<str:code>/runs/<int:run_id>/", views.run_detail, name="run"),
    path("<str:code>/runs/<int:run_id>/steps", views.run_steps, name="run_steps"),
    path("<str:code>/runs/<int:run_id>/cancel", views.run_cancel, name="cancel_run"),
    path("<str:code>/files/<int:file_id>/retry", views.file_action, {"action": "retry"}, name="retry_file"),
    path("<str:code>/files/<int:file_id>/discard", views.file_action, {"action": "discard"}, name="discard_file"),
]
