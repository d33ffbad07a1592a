"""Report definitions: data sources, reports, their panels and filters, and the query log."""

from __future__ import annotations

import re
import secrets
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

    def with_favourites(self, user: User) -> ReportQuerySet:
        """With the tags, and whether `user` marked each report a favourite (favourites first)."""
        favourite = Favourite.objects.filter(report=models.OuterRef("pk"), user_id=user.pk or 0)
        return (
            self.prefetch_related("tags")
            .annotate(is_favourite=models.Exists(favourite))
            .order_by("-is_favourite", "title")
        )

    def search(self, text: str) -> ReportQuerySet:
        """Every word in the title, description or a tag's name."""
        query = self
        for word in text.split():
            query = query.filter(
                Q(title__icontains=word) | Q(description__icontains=word) | Q(tags__name__icontains=word)
            )
        return query.distinct()


class Tag(models.Model):
    """A label that groups reports on the list (Finance, Claims, Operations)."""

    name = models.CharField(max_length=50, unique=True)
    slug = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Report(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reports")
    groups = models.ManyToManyField(Group, blank=True, related_name="reports", help_text="Groups allowed to view it.")
    tags = models.ManyToManyField(Tag, blank=True, related_name="reports")
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


class ColumnFormat(models.TextChoices):
    NUMBER = "number", "Number"
    CURRENCY = "currency", "Currency"
    PERCENT = "percent", "Percent"
    DATE = "date", "Date"
    TEXT = "text", "Plain text"


class Align(models.TextChoices):
    LEFT = "left", "Left"
    RIGHT = "right", "Right"
    CENTER = "center", "Centre"


COLUMN_KEYS = {"label", "format", "decimals", "currency", "align"}


def check_column_settings(value: Any) -> None:
    """Column settings are {"COLUMN": {"label": ..., "format": ..., "decimals": ..., "currency": ..., "align": ...}}."""
    if not isinstance(value, dict):
        raise ValidationError('Give an object whose keys are column names, e.g. {"PAID": {"label": "Paid"}}.')
    for name, setting in value.items():
        if not isinstance(setting, dict):
            raise ValidationError(f'Column {name!r}: give an object such as {{"label": "Paid"}}.')
        if unknown := set(setting) - COLUMN_KEYS:
            raise ValidationError(
                f"Column {name!r}: unknown {', '.join(sorted(unknown))}; use {', '.join(sorted(COLUMN_KEYS))}."
            )
        if setting.get("format", ColumnFormat.NUMBER) not in ColumnFormat.values:
            raise ValidationError(f"Column {name!r}: format is one of {', '.join(ColumnFormat.values)}.")
        if setting.get("align", Align.LEFT) not in Align.values:
            raise ValidationError(f"Column {name!r}: align is one of {', '.join(Align.values)}.")
        decimals = setting.get("decimals", 0)
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 10:
            raise ValidationError(f"Column {name!r}: decimals is a whole number from 0 to 10.")
        currency = setting.get("currency", "USD")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValidationError(f"Column {name!r}: currency is a three-letter code such as USD or EUR.")
        if not isinstance(setting.get("label", ""), str):
            raise ValidationError(f"Column {name!r}: label is text.")


class Panel(models.Model):
    class Visualization(models.TextChoices):
        TABLE = "table", "Table"
        BAR = "bar", "Bar chart"
        STACKED = "stacked", "Stacked bar chart"
        LINE = "line", "Line chart"
        AREA = "area", "Area chart"
        PIE = "pie", "Pie chart"
        DONUT = "donut", "Donut chart"
        SCATTER = "scatter", "Scatter plot"
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
    columns = models.JSONField(
        "column settings",
        default=dict,
        blank=True,
        validators=[check_column_settings],
        help_text='Per column, all optional: {"PAID": {"label": "Paid", "format": "currency", "currency": '
        '"USD", "decimals": 2, "align": "right"}}; formats: number, currency, percent, date, text.',
    )
    chart_x = models.CharField(
        "chart labels column",
        max_length=100,
        blank=True,
        help_text="The column a chart labels its points with (empty: the first).",
    )
    chart_y = models.CharField(
        "chart series columns",
        max_length=500,
        blank=True,
        help_text="Comma-separated columns a chart plots (empty: every numeric one). A single number compares "
        "its first column with the second, if any.",
    )
    partial_last = models.BooleanField(
        "last point is partial",
        default=False,
        help_text="The last row is a period still in progress (this month): charts mark it as partial.",
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

    def column_setting(self, name: str) -> dict[str, Any]:
        setting = self.columns.get(name) if isinstance(self.columns, dict) else None
        return setting if isinstance(setting, dict) else {}

    def column_label(self, name: str) -> str:
        return str(self.column_setting(name).get("label") or name)

    @property
    def series_columns(self) -> list[str]:
        return [name.strip() for name in self.chart_y.split(",") if name.strip()]

    @property
    def effective_timeout(self) -> float:
        limit = self.source.timeout
        return min(self.timeout, limit) if self.timeout else limit

    @property
    def effective_ttl(self) -> int:
        return settings.CACHE_TTLS["panel-results"] if self.cache_ttl is None else self.cache_ttl

    @property
    def is_chart(self) -> bool:
        return self.visualization not in (self.Visualization.TABLE, self.Visualization.NUMBER)


class Favourite(models.Model):
    """A report a user keeps at the top of their list."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favourite_reports")
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "report"], name="reports_favourite_once")]

    def __str__(self) -> str:
        return f"{self.user_id} ★ {self.report_id}"


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

    def recent_runs(self, user: User, limit: int = 8) -> models.QuerySet[QueryLog, dict[str, Any]]:
        """The user's latest report loads, one line per report and filter values, newest first."""
        return (
            self.filter(
                user_id=user.pk,
                report__in=Report.objects.visible_to(user).values("pk"),
                trigger__in=[QueryLog.Trigger.PAGE, QueryLog.Trigger.STREAM],
            )
            .values("report__slug", "report__title", "query_string")
            .annotate(last=models.Max("created_at"), panels=models.Count("id"))
            .order_by("-last")[:limit]
        )


class QueryLog(models.Model):
    """One panel run or options load: who, what, how long, and how it ended."""

    class Trigger(models.TextChoices):
        PAGE = "page", "Page"
        STREAM = "stream", "Streamed page"
        API = "api", "API"
        EXPORT = "export", "Export"
        COMMAND = "command", "Command"
        ADMIN = "admin", "Admin preview"
        SCHEDULE = "schedule", "Schedule"

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
    reference = models.CharField(
        max_length=12, blank=True, db_index=True, help_text="What the page showed a person for a failed run."
    )
    query_string = models.TextField(blank=True, help_text="The report's filter values as the page's URL had them.")

    objects = QueryLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["report", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.panel_id or '-'} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def ok(self) -> bool:
        return not self.error_kind


def new_reference() -> str:
    """A short code a person can read out (no 0/O or 1/I), for a failed run in the query log."""
    return "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))


def json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """Bound values as the query log stores them (dates as ISO text)."""
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in params.items()}
