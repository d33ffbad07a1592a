from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from ops import api as ops_api
from ops import views as ops_views
from project import api
from reports import api as reports_api
from reports import views as reports_views
from tpa import api as tpa_api

urlpatterns = [
    path("", reports_views.home, name="home"),
    path("health", ops_views.health, name="health"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("ops/", ops_views.operations, name="operations"),
    path("ops/queries/<str:query_id>/cancel", ops_views.cancel_query, name="cancel_query"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", api.urls({"": ops_api.router, "/reports": reports_api.router, "/tpa": tpa_api.router})),
    path("reports/", include("reports.urls")),
    path("reports/", include("schedules.urls")),
    path("tpa/", include("tpa.urls")),
]
