"""Master data (TPAs, target schemas, field mappings) and the pipeline's records (files, runs)."""

from __future__ import annotations

import datetime
import os
import re
import socket
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Exists, Q
from django.http import Http404
from django.urls import reverse

# Identifiers that reach Snowflake SQL: upper case, no quoting ever needed.
IDENTIFIER = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
identifier_validator = RegexValidator(IDENTIFIER, "Use A-Z, 0-9 and _, starting with a letter (upper case).")
tpa_code_validator = RegexValidator(
    r"^[A-Z][A-Z0-9_]{1,19}$", "2-20 characters: A-Z, 0-9 and _, starting with a letter."
)
# Snowflake date format elements the date transform accepts.
DATE_FORMAT = re.compile(r"^(?:YYYY|YY|MM|MON|DD|HH24|MI|SS|[-/. :])+$")
# Bronze keeps source columns by position in C01..C40 (tpa/snowflake/001_objects.sql).
MAX_SOURCE_COLUMNS = 40


# --- master data -------------------------------------------------------------------------


class TargetSchema(models.Model):
    """A silver table's layout: the columns TPA files are mapped to."""

    name = models.CharField(max_length=63, validators=[identifier_validator])
    version = models.PositiveIntegerField(default=1)
    table_name = models.CharField(
        max_length=63, validators=[identifier_validator], help_text="The SILVER table this schema describes."
    )
    key_column = models.CharField(
        max_length=63, validators=[identifier_validator], help_text="The claim key: MERGE matches rows on it."
    )
    description = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="tpa_schema_name_version")]
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ColumnType(models.TextChoices):
    TEXT = "VARCHAR", "text"
    INTEGER = "INTEGER", "integer"
    DECIMAL = "NUMBER(18, 2)", "decimal (18, 2)"
    DATE = "DATE", "date"
    TIMESTAMP = "TIMESTAMP_NTZ", "timestamp"
    BOOLEAN = "BOOLEAN", "boolean"


class TargetColumn(models.Model):
    schema = models.ForeignKey(TargetSchema, on_delete=models.CASCADE, related_name="columns")
    name = models.CharField(max_length=63, validators=[identifier_validator])
    data_type = models.CharField(max_length=20, choices=ColumnType.choices, default=ColumnType.TEXT)
    required = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schema", "name"], name="tpa_column_unique_name")]
        ordering = ["schema", "position", "id"]

    def __str__(self) -> str:
        return f"{self.name} {self.data_type}"


class TpaQuerySet(models.QuerySet):  # type: ignore[type-arg]
    def active(self) -> TpaQuerySet:
        return self.filter(active=True)

    def visible_to(self, user: Any) -> TpaQuerySet:
        """The TPAs `user` may see (the rules of `access_for`, as a filter: no query until read).
        `None` is the command line, which holds the database's credentials anyway."""
        if user is None or (user.is_authenticated and user.is_active and user.is_staff):
            return self.all()
        if not (user.is_authenticated and user.is_active):
            return self.none()
        if user.is_superuser:
            return self.all()
        granted = Permission.objects.filter(content_type__app_label="tpa", codename__in=VIEW_PERMISSIONS).filter(
            Q(user=user) | Q(group__user=user)
        )
        return self.filter(Exists(granted))


class Tpa(models.Model):
    """A third-party administrator that sends claim files."""

    code = models.CharField(max_length=20, unique=True, validators=[tpa_code_validator])
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.EmailField(blank=True)
    target_schema = models.ForeignKey(TargetSchema, on_delete=models.PROTECT, related_name="tpas")
    # Bumped by every save of the TPA's mappings (tpa.cache.bump_mappings_version); each run
    # records the version it applied.
    mappings_version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TpaQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        verbose_name = "TPA"
        permissions = [("operate_tpa", "Can upload TPA files and run the pipeline")]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"

    def get_absolute_url(self) -> str:
        return reverse("tpa:detail", args=[self.code])

    @property
    def stage_prefix(self) -> str:
        return self.code.lower()


class Transform(models.TextChoices):
    COPY = "copy", "as is"
    TRIM = "trim", "trim spaces"
    CAST = "cast", "trim, drop thousands separators, cast"
    DATE = "date", "parse a date with a format"
    CONSTANT = "constant", "a constant value"


class FieldMapping(models.Model):
    """One target column of a TPA's target schema, and where its value comes from."""

    tpa = models.ForeignKey(Tpa, on_delete=models.CASCADE, related_name="mappings")
    target_schema = models.ForeignKey(TargetSchema, on_delete=models.CASCADE, related_name="mappings")
    source_column = models.CharField(max_length=100, blank=True, help_text="The column in the TPA's file header.")
    target_column = models.CharField(max_length=63, validators=[identifier_validator])
    transform = models.CharField(max_length=10, choices=Transform.choices, default=Transform.TRIM)
    argument = models.CharField(
        max_length=200, blank=True, help_text="The date format (e.g. YYYY-MM-DD) or the constant value."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tpa", "target_schema", "target_column"], name="tpa_mapping_one_per_column")
        ]
        ordering = ["tpa", "target_schema", "id"]

    def __str__(self) -> str:
        return f"{self.tpa_id}: {self.source_column or self.argument!r} -> {self.target_column}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.transform == Transform.CONSTANT:
            if any(ord(c) < 32 or c == "\\" for c in self.argument):
                errors["argument"] = "A constant cannot contain control characters or backslashes."
        else:
            if not self.source_column.strip():
                errors["source_column"] = "Name the file column this value comes from."
            elif any(ord(c) < 32 for c in self.source_column):
                errors["source_column"] = "A column name cannot contain control characters."
        if self.transform == Transform.DATE and not DATE_FORMAT.match(self.argument):
            errors["argument"] = "Give a date format made of YYYY, MM, MON, DD, HH24, MI, SS and - / . : or spaces."
        if self.target_schema_id and self.target_column:
            # A formset reads the schema's columns once and hands them to every form.
            names = getattr(self, "known_target_columns", None) or set(
                TargetColumn.objects.filter(schema_id=self.target_schema_id).values_list("name", flat=True)
            )
            if self.target_column not in names:
                errors["target_column"] = f"{self.target_column} is not a column of the target schema."
        if errors:
            raise ValidationError(errors)


# --- the pipeline's records ----------------------------------------------------------------


class FileStatus(models.TextChoices):
    # Recorded before the PUT, so the database decides between two uploads of one name or
    # one content before either touches the stage (tpa.uploads).
    STAGING = "staging", "staging"
    UPLOADED = "uploaded", "uploaded"
    QUEUED = "queued", "queued"
    LOADING = "loading", "loading"
    LOADED = "loaded", "loaded"
    TRANSFORMED = "transformed", "transformed"
    # Waits for a person: retry it (back to uploaded), replace it with a corrected file, or
    # discard it. A new run never takes it by itself, so one bad file cannot fail every run.
    FAILED = "failed", "failed"
    DISCARDED = "discarded", "discarded"


class IngestionFileQuerySet(models.QuerySet):  # type: ignore[type-arg]
    def pending(self) -> IngestionFileQuerySet:
        """Files a new run takes: uploaded (or given back by a cancelled or lost run)."""
        return self.filter(status=FileStatus.UPLOADED)


class IngestionFile(models.Model):
    tpa = models.ForeignKey(Tpa, on_delete=models.PROTECT, related_name="files")
    original_name = models.CharField(max_length=255)
    stage_path = models.CharField(max_length=300, unique=True, help_text="<tpa>/<yyyy>/<mm>/<dd>/<name> on the stage")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField(default=0)
    columns = models.JSONField(default=list, help_text="The file's header, in order: bronze keeps them as C01...")
    status = models.CharField(max_length=12, choices=FileStatus.choices, default=FileStatus.UPLOADED)
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The run that owns the file now (queued to it or in it); every write the pipeline makes
    # to the file is guarded by it, so a cancelled or lost run never overwrites a newer one's.
    run = models.ForeignKey("PipelineRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_files")

    objects = IngestionFileQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        constraints = [
            # The same content twice for one TPA is a mistake (tpa.uploads explains which file
            # has it, and what to do), unless the earlier one was discarded.
            models.UniqueConstraint(
                fields=["tpa", "sha256"], condition=~Q(status="discarded"), name="tpa_file_no_duplicate_content"
            )
        ]

    def __str__(self) -> str:
        return self.stage_path

    @property
    def stage_dir(self) -> str:
        return self.stage_path.rpartition("/")[0]

    @property
    def stage_name(self) -> str:
        return self.stage_path.rpartition("/")[2]


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    PARTIAL = "partial", "partly failed"  # some files reached gold, some failed alone
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class PipelineRunQuerySet(models.QuerySet):  # type: ignore[type-arg]
    def active(self) -> PipelineRunQuerySet:
        return self.filter(status__in=ACTIVE_RUN_STATUSES)


class PipelineRun(models.Model):
    tpa = models.ForeignKey(Tpa, on_delete=models.PROTECT, related_name="runs")
    files = models.ManyToManyField(IngestionFile, related_name="runs", blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    error = models.TextField(blank=True)
    triggered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    task_id = models.CharField(max_length=64, blank=True)
    # The mapping fragments the silver step used, and the TPA's mappings version they came from.
    mapping_snapshot = models.JSONField(default=dict, blank=True)
    mappings_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker executing the run ("<host>:<pid>") and when it last said it was alive: a
    # worker killed mid-run writes nothing more, and without these the run would show
    # "running" forever (tpa.pipeline.recover_abandoned marks such runs failed).
    worker = models.CharField(max_length=120, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Set by a cancel of a running run; its worker sees it within a second and stops.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=150, blank=True)

    objects = PipelineRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # At most one active run per TPA, whatever starts them at the same moment.
            models.UniqueConstraint(
                fields=["tpa"], condition=Q(status__in=["queued", "running"]), name="tpa_one_active_run"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.tpa_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("tpa:run", args=[self.tpa.code, self.pk])

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE_RUN_STATUSES

    def lost_worker(self, stale_after: float, now: datetime.datetime) -> str:
        """Why a running run has lost its worker, or "" while it has one: no heartbeat came for
        `stale_after` seconds. Heartbeats only: a process id says nothing across containers
        that share a host name."""
        if self.status != RunStatus.RUNNING:
            return ""
        seen = self.heartbeat_at or self.started_at or self.created_at
        if seen is not None and (now - seen).total_seconds() > stale_after:
            return f"no heartbeat from {self.worker or 'it'} since {seen:%Y-%m-%d %H:%M:%S} UTC"
        return ""


def worker_name() -> str:
    """This process as a run's `worker`: "<host>:<pid>"."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Step(models.TextChoices):
    BRONZE = "bronze", "bronze: load files"
    SILVER = "silver", "silver: apply mappings"
    GOLD = "gold", "gold: refresh aggregates"


class StepStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped"
    CANCELLED = "cancelled", "cancelled"


class PipelineStep(models.Model):
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=10, choices=Step.choices)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING)
    rows = models.BigIntegerField(null=True, blank=True)
    query_ids = models.JSONField(default=list, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="What each procedure call returned.")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="tpa_step_once_per_run")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


# --- who may do what -------------------------------------------------------------------------

# Either permission lets a user see TPAs (tpa.operate_tpa includes looking).
VIEW_PERMISSIONS = ("view_tpa", "operate_tpa")


class Access(models.IntegerChoices):
    """What a user may do with TPAs: each level includes the ones before it."""

    NONE = 0
    VIEW = 1  # see TPAs, files, runs and previews
    OPERATE = 2  # upload files, start and cancel runs, retry and discard files
    EDIT = 3  # edit field mappings (staff)


async def access_for(user: Any) -> Access:
    """Staff operate and edit; `tpa.operate_tpa` operates; `tpa.view_tpa` only looks.
    `None` is the command line (manage.py), which may do everything."""
    if user is None:
        return Access.EDIT
    if not (user.is_authenticated and user.is_active):
        return Access.NONE
    if user.is_staff:
        return Access.EDIT
    if await user.ahas_perm("tpa.operate_tpa"):
        return Access.OPERATE
    if await user.ahas_perm("tpa.view_tpa"):
        return Access.VIEW
    return Access.NONE


async def get_tpa_or_404(user: Any, code: str, need: Access = Access.VIEW) -> tuple[Tpa, Access]:
    """The TPA `code` if `user` may see it (else Http404, so its existence does not leak), and
    what they may do with it; PermissionDenied when that is less than `need`. Pages, the API
    and the commands (user None) all ask this one function."""
    tpa = await Tpa.objects.visible_to(user).select_related("target_schema").filter(code=code).afirst()
    if tpa is None:
        raise Http404("No such TPA.")
    access = await access_for(user)
    if access < need:
        raise PermissionDenied("Only TPA operators may do this." if need < Access.EDIT else "Only staff may do this.")
    return tpa, access
