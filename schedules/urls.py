from __future__ import annotations

from django.urls import path

from schedules import views

app_name = "schedules"

# Under /reports/<slug>/, beside the report's own pages.
urlpatterns = [
    path("<slug:slug>/schedules/", views.section, name="section"),
    path("<slug:slug>/schedules/add", views.add_schedule, name="add"),
    path("<slug:slug>/schedules/<int:schedule_id>/run", views.run_schedule, name="run"),
    path("<slug:slug>/schedules/subscriptions/add", views.add_subscription, name="add_subscription"),
    path("<slug:slug>/schedules/alerts/add", views.add_alert, name="add_alert"),
    path("<slug:slug>/schedules/<str:kind>/<int:item_id>/remove", views.remove, name="remove"),
    path("<slug:slug>/pdf/", views.request_pdf, name="pdf"),
    path("<slug:slug>/pdf/<int:run_id>/", views.pdf_status, name="pdf_status"),
    path("<slug:slug>/pdf/<int:run_id>/file", views.pdf_file, name="pdf_file"),
]
