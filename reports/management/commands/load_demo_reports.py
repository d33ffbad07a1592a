from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils.text import slugify

from project.sources import SourceError, get_source
from reports.models import DataSource, Filter, Panel, Report, Tag

# The claims reports read the gold layer of the TPA pipeline (GOLD.CLAIMS, refreshed by
# GOLD.REFRESH_TPA after each run: tpa/snowflake/030_gold_refresh_tpa.sql), so a file uploaded
# and run shows up here; `load_demo_tpas` (run before this by `demo_setup`) seeds it.
CLAIMS_TABLE = "GOLD.CLAIMS"

CLAIMS_WHERE = """
WHERE SERVICE_DATE BETWEEN %(period_from)s AND %(period_to)s
  AND (%(tpa)s IS NULL OR TPA_CODE = %(tpa)s)
  AND (%(status)s = '[]'
    OR CLAIM_STATUS IN (SELECT VALUE::VARCHAR FROM TABLE(FLATTEN(INPUT => PARSE_JSON(%(status)s)))))
  AND PAID_AMOUNT >= %(min_amount)s"""

CLAIMS_FILTERS: list[dict[str, Any]] = [
    dict(name="period", label="Service date", kind=Filter.Kind.DATE_RANGE, default="-365d..today", required=True),
    dict(
        name="tpa",
        label="TPA",
        kind=Filter.Kind.CHOICE,
        options_sql=f"SELECT DISTINCT TPA_CODE, TPA_CODE FROM {CLAIMS_TABLE} ORDER BY 1",
    ),
    dict(
        name="status",
        label="Claim status",
        kind=Filter.Kind.MULTI_CHOICE,
        options_sql=f"SELECT DISTINCT CLAIM_STATUS, CLAIM_STATUS FROM {CLAIMS_TABLE} ORDER BY 1",
    ),
    dict(name="min_amount", label="Paid at least", kind=Filter.Kind.NUMBER, default="0", required=True),
]

CLAIMS_PANELS = [
    (
        "Total paid",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f'SELECT SUM(PAID_AMOUNT) AS "Total paid" FROM {CLAIMS_TABLE} {CLAIMS_WHERE}',
    ),
    (
        "Claims",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f'SELECT COUNT(*) AS "Claims" FROM {CLAIMS_TABLE} {CLAIMS_WHERE}',
    ),
    (
        "Average claim",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f'SELECT ROUND(AVG(PAID_AMOUNT), 2) AS "Average paid" FROM {CLAIMS_TABLE} {CLAIMS_WHERE}',
    ),
    (
        "Claims in the last 30 days",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        "SELECT SUM(CASE WHEN SERVICE_DATE > DATEADD(day, -30, CURRENT_DATE()) THEN 1 ELSE 0 END) AS CLAIMS, "
        "SUM(CASE WHEN SERVICE_DATE <= DATEADD(day, -30, CURRENT_DATE()) "
        "AND SERVICE_DATE > DATEADD(day, -60, CURRENT_DATE()) THEN 1 ELSE 0 END) AS PREVIOUS "
        f"FROM {CLAIMS_TABLE} {CLAIMS_WHERE}",
    ),
    (
        "Paid by month",
        Panel.Visualization.LINE,
        Panel.Width.TWO_THIRDS,
        f"SELECT SERVICE_MONTH AS MONTH, SUM(PAID_AMOUNT) AS PAID "
        f"FROM {CLAIMS_TABLE} {CLAIMS_WHERE} GROUP BY 1 ORDER BY 1",
    ),
    (
        "Claims by status",
        Panel.Visualization.DONUT,
        Panel.Width.THIRD,
        f"SELECT CLAIM_STATUS AS STATUS, COUNT(*) AS CLAIMS FROM {CLAIMS_TABLE} {CLAIMS_WHERE} "
        f"GROUP BY 1 ORDER BY 2 DESC",
    ),
    (
        "Paid by TPA",
        Panel.Visualization.BAR,
        Panel.Width.TWO_THIRDS,
        f"SELECT TPA_CODE AS TPA, SUM(PAID_AMOUNT) AS PAID FROM {CLAIMS_TABLE} {CLAIMS_WHERE} "
        f"GROUP BY 1 ORDER BY 2 DESC",
    ),
    (
        "Paid by procedure",
        Panel.Visualization.PIE,
        Panel.Width.HALF,
        f"SELECT PROCEDURE_CODE, SUM(PAID_AMOUNT) AS PAID FROM {CLAIMS_TABLE} {CLAIMS_WHERE} "
        f"GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
    ),
    (
        "Claims by TPA and status",
        Panel.Visualization.STACKED,
        Panel.Width.HALF,
        "SELECT TPA_CODE AS TPA, SUM(CASE WHEN CLAIM_STATUS = 'PAID' THEN 1 ELSE 0 END) AS PAID, "
        "SUM(CASE WHEN CLAIM_STATUS = 'PENDED' THEN 1 ELSE 0 END) AS PENDED, "
        "SUM(CASE WHEN CLAIM_STATUS = 'ADJUSTED' THEN 1 ELSE 0 END) AS ADJUSTED, "
        "SUM(CASE WHEN CLAIM_STATUS = 'DENIED' THEN 1 ELSE 0 END) AS DENIED "
        f"FROM {CLAIMS_TABLE} {CLAIMS_WHERE} GROUP BY 1 ORDER BY 1",
    ),
    (
        "Claims per month",
        Panel.Visualization.AREA,
        Panel.Width.HALF,
        f"SELECT SERVICE_MONTH AS MONTH, COUNT(*) AS CLAIMS FROM {CLAIMS_TABLE} {CLAIMS_WHERE} GROUP BY 1 ORDER BY 1",
    ),
    (
        "Largest claims",
        Panel.Visualization.TABLE,
        Panel.Width.HALF,
        f"SELECT CLAIM_ID, TPA_CODE AS TPA, MEMBER_ID, SERVICE_DATE, PAID_AMOUNT, CLAIM_STATUS AS STATUS "
        f"FROM {CLAIMS_TABLE} {CLAIMS_WHERE} "
        f"ORDER BY PAID_AMOUNT DESC LIMIT 50",
    ),
    (
        "Denied claims",
        Panel.Visualization.TABLE,
        Panel.Width.HALF,
        f"SELECT CLAIM_ID, TPA_CODE AS TPA, SERVICE_DATE, BILLED_AMOUNT FROM {CLAIMS_TABLE} {CLAIMS_WHERE} "
        f"AND CLAIM_STATUS = 'DENIED' "
        f"ORDER BY SERVICE_DATE DESC",
    ),
]

USD = {"format": "currency", "currency": "USD"}

# Column settings, chart options and tags: what the panels read like (reports/presentation.py).
CLAIMS_SETTINGS: dict[str, dict[str, Any]] = {
    "Total paid": {"columns": {"Total paid": USD}},
    "Average claim": {"columns": {"Average paid": {**USD, "label": "Average paid per claim"}}},
    "Claims in the last 30 days": {
        "columns": {"CLAIMS": {"label": "Claims"}, "PREVIOUS": {"label": "The 30 days before"}}
    },
    "Paid by month": {"columns": {"MONTH": {"label": "Month"}, "PAID": {**USD, "label": "Paid"}}, "partial_last": True},
    "Claims by status": {"columns": {"STATUS": {"label": "Status"}, "CLAIMS": {"label": "Claims"}}},
    "Paid by TPA": {"columns": {"PAID": {**USD, "label": "Paid"}}},
    "Paid by procedure": {"columns": {"PROCEDURE_CODE": {"label": "Procedure"}, "PAID": {**USD, "label": "Paid"}}},
    "Claims per month": {"columns": {"MONTH": {"label": "Month"}}, "partial_last": True},
    "Largest claims": {
        "columns": {
            "CLAIM_ID": {"label": "Claim"},
            "MEMBER_ID": {"label": "Member"},
            "SERVICE_DATE": {"label": "Service date", "format": "date"},
            "PAID_AMOUNT": {**USD, "label": "Paid"},
        }
    },
    "Denied claims": {
        "columns": {
            "CLAIM_ID": {"label": "Claim"},
            "SERVICE_DATE": {"label": "Service date", "format": "date"},
            "BILLED_AMOUNT": {**USD, "label": "Billed"},
        }
    },
}
PANEL_DEFAULTS: dict[str, Any] = {"columns": {}, "chart_x": "", "chart_y": "", "partial_last": False}
TAGS = {"claims-overview": ["Claims", "Finance"], "fanout-activity": ["Operations"], "isolation": ["Operations"]}

ACTIVITY_FILTERS: list[dict[str, Any]] = [
    dict(name="period", label="Run date", kind=Filter.Kind.DATE_RANGE, default="-30d..today", required=True),
    dict(
        name="trigger",
        label="Run from",
        kind=Filter.Kind.CHOICE,
        options_sql="SELECT value, label FROM (VALUES ('page', 'Page'), ('stream', 'Streamed page'), ('api', 'API'), "
        "('export', 'Export'), ('command', 'Command'), ('admin', 'Admin preview')) AS t(value, label)",
    ),
]

# Report queries run as a read-only role that cannot read the app's tables (auth_user holds
# password hashes). What the activity report shows is published to it as views in the
# `reports` schema, which run with their owner's (the app's) rights and expose these columns only.
REPORT_VIEWS = {
    "query_log": "SELECT id, created_at, report_id, panel_id, trigger, source, duration_ms, rows, cache_hit, "
    "error_kind, error FROM reports_querylog",
    "panels": "SELECT id, report_id, title FROM reports_panel",
    "reports": "SELECT r.id, r.title, r.slug, u.username AS owner, r.updated_at FROM reports_report r "
    "JOIN auth_user u ON u.id = r.owner_id",
}

ACTIVITY_WHERE = """
WHERE l.created_at >= %(period_from)s AND l.created_at < %(period_to)s::date + 1
  AND (%(trigger)s::text IS NULL OR l.trigger = %(trigger)s)"""

ACTIVITY_PANELS = [
    (
        "Panel runs",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f'SELECT COUNT(*) AS "Panel runs" FROM reports.query_log l {ACTIVITY_WHERE}',
    ),
    (
        "Cache hit ratio",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f'SELECT ROUND(100.0 * AVG(CASE WHEN l.cache_hit THEN 1 ELSE 0 END), 1) AS "Cache hits (%%)" '
        f"FROM reports.query_log l {ACTIVITY_WHERE}",
    ),
    (
        "Failed runs",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        f"SELECT COUNT(*) AS \"Failed runs\" FROM reports.query_log l {ACTIVITY_WHERE} AND l.error_kind <> ''",
    ),
    (
        "Runs per day",
        Panel.Visualization.LINE,
        Panel.Width.TWO_THIRDS,
        f"SELECT l.created_at::date AS day, COUNT(*) AS runs, "
        f"COUNT(*) FILTER (WHERE l.cache_hit) AS cached FROM reports.query_log l {ACTIVITY_WHERE} "
        "GROUP BY 1 ORDER BY 1",
    ),
    (
        "Slowest panels (median ms)",
        Panel.Visualization.BAR,
        Panel.Width.THIRD,
        f"SELECT p.title, ROUND(PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1) AS median_ms "
        f"FROM reports.query_log l JOIN reports.panels p ON p.id = l.panel_id {ACTIVITY_WHERE} AND NOT l.cache_hit "
        f"GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
    ),
    (
        "Recent errors",
        Panel.Visualization.TABLE,
        Panel.Width.FULL,
        f"SELECT l.created_at, r.title AS report, p.title AS panel, l.error_kind, l.error FROM reports.query_log l "
        f"LEFT JOIN reports.reports r ON r.id = l.report_id LEFT JOIN reports.panels p ON p.id = l.panel_id "
        f"{ACTIVITY_WHERE} AND l.error_kind <> '' ORDER BY l.created_at DESC LIMIT 100",
    ),
    (
        "Reports",
        Panel.Visualization.TABLE,
        Panel.Width.FULL,
        "SELECT r.title, r.slug, r.owner, COUNT(p.id) AS panels, r.updated_at FROM reports.reports r "
        "LEFT JOIN reports.panels p ON p.report_id = r.id "
        "GROUP BY r.id, r.title, r.slug, r.owner, r.updated_at ORDER BY r.title",
    ),
]

ISOLATION_FILTERS: list[dict[str, Any]] = [
    dict(
        name="note",
        label="Anything (bound, never spliced into SQL)",
        kind=Filter.Kind.TEXT,
        default="'; DROP TABLE reports_report; --",
    ),
]

ISOLATION_PANELS = [
    (
        "Quick on Postgres",
        Panel.Visualization.TABLE,
        Panel.Width.THIRD,
        "postgres",
        None,
        "SELECT %(note)s::text AS you_typed, now() AS at",
    ),
    (
        "Quick on Snowflake",
        Panel.Visualization.TABLE,
        Panel.Width.THIRD,
        "snowflake",
        None,
        "SELECT %(note)s AS YOU_TYPED, CURRENT_TIMESTAMP() AS AT",
    ),
    (
        "Claims on Snowflake",
        Panel.Visualization.NUMBER,
        Panel.Width.THIRD,
        "snowflake",
        None,
        f'SELECT COUNT(*) AS "Claims" FROM {CLAIMS_TABLE}',
    ),
    (
        "Slow Postgres query (30 s, timeout 3 s)",
        Panel.Visualization.TABLE,
        Panel.Width.HALF,
        "postgres",
        3.0,
        "SELECT pg_sleep(30) AS slept",
    ),
    (
        "Slow Snowflake query (30 s, timeout 3 s)",
        Panel.Visualization.TABLE,
        Panel.Width.HALF,
        "snowflake",
        3.0,
        "SELECT SYSTEM$WAIT(30) AS WAITED",
    ),
    ("Failing query", Panel.Visualization.TABLE, Panel.Width.HALF, "postgres", None, "SELECT * FROM no_such_table"),
    (
        "Takes one second",
        Panel.Visualization.BAR,
        Panel.Width.HALF,
        "postgres",
        None,
        "SELECT g AS n, g * g AS squared FROM generate_series(1, 12) AS g, pg_sleep(1)",
    ),
]


class Command(BaseCommand):
    help = "Install the demo reports (Snowflake claims, the app's own tables, isolation); safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        owner = (
            get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
            or get_user_model().objects.filter(is_staff=True).order_by("pk").first()
        )
        if owner is None:
            raise CommandError("Create a staff user first (manage.py demo_setup does).")
        claims = self.count_claims()
        self.publish_report_views()
        analysts, _ = Group.objects.get_or_create(name="Analysts")
        with transaction.atomic():
            snowflake, _ = DataSource.objects.update_or_create(
                name="Warehouse (Snowflake)", defaults={"kind": "snowflake", "connection": "snowflake", "timeout": 30}
            )
            postgres, _ = DataSource.objects.update_or_create(
                name="App database (Postgres)", defaults={"kind": "postgres", "connection": "postgres", "timeout": 30}
            )
            sources = {"snowflake": snowflake, "postgres": postgres}
            self.install(
                "claims-overview",
                "Claims overview",
                "Claims in the TPA pipeline's gold layer by month, TPA, procedure and status (Snowflake).",
                owner,
                analysts,
                CLAIMS_FILTERS,
                [(*panel[:3], "snowflake", None, panel[3]) for panel in CLAIMS_PANELS],
                sources,
                options_source=snowflake,
            )
            self.install(
                "fanout-activity",
                "Fanout activity",
                "How reports are used: panel runs, cache hits and errors, from the query log (Postgres).",
                owner,
                analysts,
                ACTIVITY_FILTERS,
                [(*panel[:3], "postgres", None, panel[3]) for panel in ACTIVITY_PANELS],
                sources,
                options_source=postgres,
            )
            self.install(
                "isolation",
                "Isolation: slow and failing panels",
                "One panel times out and one fails; every other panel still shows its rows.",
                owner,
                analysts,
                ISOLATION_FILTERS,
                ISOLATION_PANELS,
                sources,
                options_source=postgres,
            )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo reports ready: claims-overview, fanout-activity, isolation"
                + ("" if claims else " (no claims in the gold layer yet: run `manage.py load_demo_tpas`)")
            )
        )

    def publish_report_views(self) -> None:
        """The `reports` schema's views, readable by the report queries' role."""
        role = async_to_sync(self.report_role)()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS reports")
            for name, query in REPORT_VIEWS.items():
                cursor.execute(f"CREATE OR REPLACE VIEW reports.{name} AS {query}")
            if role and role != connection.settings_dict["USER"]:
                quoted = connection.ops.quote_name(role)
                cursor.execute(f"GRANT USAGE ON SCHEMA reports TO {quoted}")
                cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA reports TO {quoted}")

    @staticmethod
    async def report_role() -> str:
        """The role report queries connect as (REPORTS_DATABASE_URL's user)."""
        result = await get_source("postgres").execute("SELECT current_user", timeout=10)
        return str(result.rows[0][0])

    def count_claims(self) -> int:
        """Claims the claims report can show now (0 when the gold layer is missing or empty)."""
        try:
            result = async_to_sync(get_source("snowflake").execute)(f"SELECT COUNT(*) FROM {CLAIMS_TABLE}", timeout=60)
        except SourceError as exc:
            self.stderr.write(self.style.WARNING(f"Snowflake gold layer not readable: {exc}"))
            return 0
        return int(result.rows[0][0])

    def install(
        self,
        slug: str,
        title: str,
        description: str,
        owner: Any,
        group: Group,
        filters: list[dict[str, Any]],
        panels: Sequence[tuple[str, str, str, str, float | None, str]],
        sources: dict[str, DataSource],
        *,
        options_source: DataSource,
    ) -> Report:
        report, _ = Report.objects.update_or_create(
            slug=slug, defaults={"title": title, "description": description, "owner": owner}
        )
        report.groups.add(group)
        report.tags.set(
            Tag.objects.get_or_create(slug=slugify(name), defaults={"name": name})[0] for name in TAGS.get(slug, [])
        )
        # Updated in place, so the query log keeps pointing at the same panels.
        for order, spec in enumerate(filters):
            Filter.objects.update_or_create(
                report=report,
                name=spec["name"],
                defaults={
                    **spec,
                    "order": order,
                    "options_source": options_source if spec.get("options_sql") else None,
                },
            )
        report.filters.exclude(name__in=[spec["name"] for spec in filters]).delete()
        for order, (name, kind, width, source, timeout, sql) in enumerate(panels):
            Panel.objects.update_or_create(
                report=report,
                title=name,
                defaults={
                    "visualization": kind,
                    "width": width,
                    "source": sources[source],
                    "timeout": timeout,
                    "sql": sql.strip(),
                    "order": order,
                    **PANEL_DEFAULTS,
                    **CLAIMS_SETTINGS.get(name, {}),
                },
            )
        report.panels.exclude(title__in=[panel[0] for panel in panels]).delete()
        return report
