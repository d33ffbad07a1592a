from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache as django_cache

from project.metrics import SOURCE_CALLS
from reports.models import DataSource, Filter, Panel, Report


@pytest.fixture(autouse=True)
def clean_cache():
    django_cache.clear()
    yield
    django_cache.clear()


def make_source(kind: str = "postgres", **kwargs: Any) -> DataSource:
    source, _ = DataSource.objects.get_or_create(
        name=kwargs.pop("name", kind), defaults={"kind": kind, "connection": kind, **kwargs}
    )
    return source


def make_report(owner: User, *, groups: Sequence[Group] = (), slug: str = "claims", **kwargs: Any) -> Report:
    report = Report.objects.create(owner=owner, slug=slug, title=kwargs.pop("title", slug.title()), **kwargs)
    report.groups.set(groups)
    return report


def make_panel(report: Report, sql: str = "SELECT 1 AS one", *, source: str = "postgres", **kwargs: Any) -> Panel:
    return Panel.objects.create(
        report=report, sql=sql, source=make_source(source), title=kwargs.pop("title", sql[:40]), **kwargs
    )


def make_filter(report: Report, name: str, kind: str = Filter.Kind.TEXT, **kwargs: Any) -> Filter:
    if kwargs.get("options_sql"):
        kwargs.setdefault("options_source", make_source(kwargs.pop("options_kind", "postgres")))
    return Filter.objects.create(report=report, name=name, label=kwargs.pop("label", name.title()), kind=kind, **kwargs)


def source_calls(source: str = "postgres") -> float:
    """Queries that reached the database (the data-source layer's own counter)."""
    return sum(
        SOURCE_CALLS.labels(source, "query", outcome)._value.get()
        for outcome in ("ok", "timeout", "unavailable", "query", "parameters", "error")
    )


@pytest.fixture
def report(owner: User, analysts: Group) -> Report:
    """A report shared with the analysts group: one quick panel."""
    report = make_report(owner, groups=[analysts])
    make_panel(report, "SELECT 'ok' AS status, 42 AS answer", title="Quick")
    return report
