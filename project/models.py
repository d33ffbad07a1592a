from __future__ import annotations

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import models


class CacheControl(models.Model):
    """No table: it carries the permission for the admin's Caches page and the cache API,
    and names what cache actions are logged against in the admin's history."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("control_cache", "Can see and control caches")]
        verbose_name = "cache"

    PERMISSION = "project.control_cache"

    def __str__(self) -> str:
        return "caches"

    @staticmethod
    def user_can_control(user: User | AnonymousUser) -> bool:
        return bool(user.is_active and user.is_staff and user.has_perm(CacheControl.PERMISSION))

    @staticmethod
    async def auser_can_control(user: User | AnonymousUser) -> bool:
        return bool(user.is_active and user.is_staff and await user.ahas_perm(CacheControl.PERMISSION))

    @staticmethod
    async def arecord(user: User | AnonymousUser, target: str, message: str, *, destructive: bool = False) -> LogEntry:
        """Write the action to the admin's log (who, when, what) as admin actions are."""
        if not isinstance(user, User):
            raise PermissionDenied("Only a signed-in user may control caches.")
        content_type = await ContentType.objects.aget(app_label="project", model="cachecontrol")
        return await LogEntry.objects.acreate(
            user_id=user.pk,
            content_type=content_type,
            object_id=target,
            object_repr=f"cache {target}",
            action_flag=DELETION if destructive else CHANGE,
            change_message=message,
        )
