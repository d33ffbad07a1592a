from __future__ import annotations

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from reports.models import DataSource, Filter, Panel, Report
        from reports.services import definitions_changed, users_changed

        # What a report's definition holds, and who it is shared with (reports.services.DEFINITIONS).
        for sender in (Report, Panel, Filter, DataSource):
            for signal in (post_save, post_delete):
                uid = f"reports.definitions.{sender.__name__}"
                signal.connect(definitions_changed, sender=sender, dispatch_uid=uid)
        m2m_changed.connect(definitions_changed, sender=Report.groups.through, dispatch_uid="reports.sharing")
        # Users and their groups: project.auth moves the shared generation; this process forgets at once.
        user = get_user_model()
        for people in (user, Group):
            for signal in (post_save, post_delete):
                signal.connect(users_changed, sender=people, dispatch_uid=f"reports.access.{people.__name__}")
        m2m_changed.connect(users_changed, sender=user.groups.through, dispatch_uid="reports.access.memberships")
