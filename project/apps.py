from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class FanoutAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "project.admin.FanoutAdminSite"


class ProjectConfig(AppConfig):
    default = True
    name = "project"
    verbose_name = "Fanout"

    def ready(self) -> None:
        from project import auth

        auth.connect_signals()
