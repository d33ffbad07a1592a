from __future__ import annotations

from django.conf import settings
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


class TokenIdentity(models.Model):
    """Which local user a bearer token's (issuer, subject) stands for.

    Created on first sight for a new, unprivileged user; never found by username, so an
    identity-provider account named like a local one does not become it. A local staff or
    superuser account is reached by token only through an identity an administrator adds here.
    """

    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_identities")
    # The groups this identity's tokens added (through TOKEN_GROUPS): only these are ever
    # taken away again when a later token no longer claims them; local groups stay.
    granted_groups = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="project_token_identity_unique")]
        verbose_name_plural = "token identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
