"""The data-source layer: one interface for Postgres and Snowflake, typed errors, metrics.

from project.sources import get_source
result = await get_source("snowflake").execute("SELECT ... WHERE tpa = %(tpa)s", {"tpa": "ACME"}, timeout=10)
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from project.sources.base import QueryResult, Source, placeholder_names
from project.sources.errors import (
    ParameterError,
    QueryCancelled,
    QueryError,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)

__all__ = [
    "ParameterError",
    "QueryCancelled",
    "QueryError",
    "QueryResult",
    "Source",
    "SourceError",
    "SourceTimeout",
    "SourceUnavailable",
    "get_source",
    "placeholder_names",
    "source_names",
]


def source_names() -> list[str]:
    return list(settings.FANOUT_SOURCES)


@cache
def get_source(name: str) -> Source:
    """The one process-wide instance of a configured source (pools and executors are shared)."""
    try:
        config = settings.FANOUT_SOURCES[name]
    except KeyError:
        raise ImproperlyConfigured(f"No data source named {name!r} in FANOUT_SOURCES.") from None
    if config["kind"] == "postgres":
        from project.sources.postgres import PostgresSource

        return PostgresSource(name, config)
    if config["kind"] == "snowflake":
        from project.sources.snowflake import SnowflakeSource

        return SnowflakeSource(name, config)
    raise ImproperlyConfigured(f"Data source {name!r} has unknown kind {config['kind']!r}.")
