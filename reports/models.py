"""Report definitions: data sources, reports, their panels and filters, and the query log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from project.sources import Source, get_source, placeholder_names
from reports.sql import read_only_problems

User = AuthUser | AnonymousUser

identifier = RegexValidator(
    r"^[a-z_][a-z0-9_]*$", "Use lower-case letters, digits and underscores, starting with a letter."
)


class DataSource(models.Model):
    """A configured connection (settings.FANOUT_SOURCES) as report authors see it."""

    class Kind(models.TextChoices):
        POSTGRES = "postgres", "Postgres"
        SNOWFLAKE = "snowflake", "Snowflake"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    connection = models.CharField(
        max_length=100, help_text="The name of a connection in FANOUT_SOURCES (settings), e.g. “postgres”."
    )
    timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1)], help_text="Seconds; the longest any panel here may run."
    )
    pool_share = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The most queries of this source that one web process runs at once (empty: the pool's size).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        config = settings.FANOUT_SOURCES.get(self.connection)
        if config is None:
            raise ValidationError(
                {"connection": f"No connection named {self.connection!r}; known: {', '.join(settings.FANOUT_SOURCES)}."}
            )
        if config["kind"] != self.kind:
            raise ValidationError({"kind": f"Connection {self.connection!r} is a {config['kind']} connection."})

    @property
    def source(self) -> Source:
        return get_source(self.connection)

    @property
    def dialect(self) -> str:
        return "snowflake" if self.kind == self.Kind.SNOWFLAKE else "postgres"


class ReportQuerySet(models.QuerySet["Report"]):
    def visible_to(self, user: User) -> ReportQuerySet:
        """Reports the user owns or shares a group with; superusers see every report."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(Q(owner_id=user.pk) | Q(groups__user=user.pk)).distinct()

    def for_page(self) -> ReportQuerySet:
        """With everything a page or a run needs, in three queries."""
        return self.select_related("owner").prefetch_related(
            models.Prefetch("panels", Panel.objects.select_related("source")),
            models.Prefetch("filters", Filter.objects.select_related("options_source")),
        )

    def for_list(self) -> ReportQuerySet:
        return self.select_related("owner").annotate(panel_count=models.Count("panels", distinct=True))


class Report(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reports")
    groups = models.ManyToManyField(Group, blank=True, related_name="reports", help_text="Groups allowed to view it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReportQuerySet.as_manager()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("reports:report", args=[self.slug])

    def user_can_view(self, user: User) -> bool:
        """Synchronous check (the async views use `visible_to` in the same query that loads the report)."""
        return Report.objects.visible_to(user).filter(pk=self.pk).exists()


class Panel(models.Model):
    class Visualization(models.TextChoices):
        TABLE = "table", "Table"
        BAR = "bar", "Bar chart"
        LINE = "line", "Line chart"
        NUMBER = "number", "Single number"

    class Width(models.TextChoices):
        THIRD = "third", "One third"
        HALF = "half", "Half"
        TWO_THIRDS = "two-thirds", "Two thirds"
        FULL = "full", "Full width"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="panels")
    title = models.CharField(max_length=200)
    sql = models.TextField(
        "SQL",
        help_text="One read-only SELECT. Filters are bound parameters: %(name)s, and %(name_from)s / %(name_to)s "
        "for a date range; a literal percent sign is %%. Charts use the first column as labels and the "
        "other numeric columns as series.",
    )
    source = models.ForeignKey(DataSource, on_delete=models.PROTECT, related_name="panels")
    visualization = models.CharField(max_length=10, choices=Visualization.choices, default=Visualization.TABLE)
    order = models.PositiveSmallIntegerField(default=0)
    width = models.CharField(max_length=12, choices=Width.choices, default=Width.HALF)
    timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)], help_text="Seconds (empty: the source's timeout)."
    )
    cache_ttl = models.PositiveIntegerField(
        "cache TTL", null=True, blank=True, help_text="Seconds a result is reused (empty: the default; 0: never)."
    )
    stale_while_revalidate = models.PositiveIntegerField(
        default=0, help_text="Seconds past its TTL a result may still be shown while one refresh runs."
    )

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        # The same check runs again before every run (the runner, exports): SQL saved
        # through the ORM, a fixture or a data migration never passed this method.
        if self.sql and self.source_id is not None and (problems := read_only_problems(self.sql, self.source.dialect)):
            raise ValidationError({"sql": list(problems)})

    @property
    def effective_timeout(self) -> float:
        limit = self.source.timeout
        return min(self.timeout, limit) if self.timeout else limit

    @property
    def effective_ttl(self) -> int:
        return settings.CACHE_TTLS["panel-results"] if self.cache_ttl is None else self.cache_ttl

    @property
    def is_chart(self) -> bool:
        return self.visualization in (self.Visualization.BAR, self.Visualization.LINE)


class Filter(models.Model):
    class Kind(models.TextChoices):
        CHOICE = "choice", "Choice"
        MULTI_CHOICE = "multi_choice", "Multiple choice"
        DATE = "date", "Date"
        DATE_RANGE = "date_range", "Date range"
        NUMBER = "number", "Number"
        TEXT = "text", "Text"

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="filters")
    name = models.CharField(max_length=50, validators=[identifier], help_text="The SQL parameter: %(name)s.")
    label = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TEXT)
    default = models.CharField(
        max_length=200,
        blank=True,
        help_text="Dates: YYYY-MM-DD, “today” or “-30d”; a range is “-30d..today”; several choices: a,b.",
    )
    required = models.BooleanField(default=False)
    options_sql = models.TextField(
        "options SQL",
        blank=True,
        help_text="For choices: a query whose first column is the value, the second the label.",
    )
    options_source = models.ForeignKey(DataSource, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["report", "name"], name="reports_filter_unique_name")]

    def __str__(self) -> str:
        return self.label

    @property
    def has_options(self) -> bool:
        return self.kind in (self.Kind.CHOICE, self.Kind.MULTI_CHOICE)

    @property
    def parameter_names(self) -> list[str]:
        if self.kind == self.Kind.DATE_RANGE:
            return [f"{self.name}_from", f"{self.name}_to"]
        return [self.name]

    def clean(self) -> None:
        if self.has_options and not self.options_sql.strip():
            raise ValidationError({"options_sql": "A choice filter needs a query that lists its options."})
        if self.options_sql.strip() and self.options_source_id is None:
            raise ValidationError({"options_source": "Say which source the options query runs on."})
        if self.options_sql.strip() and self.options_source is not None:
            # Options queries run without parameters (the runner checks again before each run).
            problems = list(read_only_problems(self.options_sql, self.options_source.dialect))
            if names := placeholder_names(self.options_sql):
                problems.append(f"An options query takes no parameters: remove %({names[0]})s.")
            if problems:
                raise ValidationError({"options_sql": problems})


class QueryLogQuerySet(models.QuerySet["QueryLog"]):
    def failed(self) -> QueryLogQuerySet:
        return self.exclude(error_kind="")


class QueryLog(models.Model):
    """One panel run or options load: who, what, how long, and how it ended."""

    class Trigger(models.TextChoices):
        PAGE = "page", "Page"
        STREAM = "stream", "Streamed page"
        API = "api", "API"
        EXPORT = "export", "Export"
        COMMAND = "command", "Command"
        ADMIN = "admin", "Admin preview"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    report = models.ForeignKey(Report, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    panel = models.ForeignKey(Panel, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    source = models.CharField(max_length=100)
    parameters = models.JSONField(default=dict, blank=True, encoder=None)
    duration_ms = models.FloatField()
    rows = models.PositiveIntegerField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    error_kind = models.CharField(max_length=20, blank=True)
    error = models.TextField(blank=True)
    query_id = models.CharField(max_length=100, blank=True)

    objects = QueryLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["report", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.panel_id or '-'} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def ok(self) -> bool:
        return not self.error_kind


def json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """Bound values as the query log stores them (dates as ISO text)."""
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in params.items()}
