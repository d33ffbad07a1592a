from __future__ import annotations

import asyncio
import csv
import decimal
import io
import uuid
from collections.abc import Callable

import pytest
from django.core.management import call_command

from tpa import demo
from tpa.models import FieldMapping, Tpa

# The ACME layout of the demo (tpa/demo.py): a file column for each target column.
ACME = demo.DEMO_TPAS[0]


@pytest.fixture(scope="session")
def deployed(django_db_setup: None, django_db_blocker) -> None:
    """The warehouse objects and procedures, deployed once through the real command."""
    with django_db_blocker.unblock():
        call_command("snowflake_deploy")


@pytest.fixture
def make_tpa(db: None, deployed: None) -> Callable[..., Tpa]:
    """A TPA with a fresh code (Snowflake rows outlive each test's rollback) and ACME's mappings."""

    def make(**kwargs: object) -> Tpa:
        schema = demo.claims_schema()
        code = str(kwargs.pop("code", f"T{uuid.uuid4().hex[:8].upper()}"))
        kwargs.setdefault("name", f"{code} Benefits")
        tpa = Tpa.objects.create(code=code, target_schema=schema, **kwargs)
        FieldMapping.objects.bulk_create(
            FieldMapping(tpa=tpa, target_schema=schema, source_column=s, target_column=t, transform=tr, argument=a)
            for s, t, tr, a in ACME.mappings
        )
        return tpa

    return make


def claims_file(rows: int = 12, seed: int = 1, name: str = "claims.csv") -> io.BytesIO:
    data = io.BytesIO(demo.claims_csv(ACME, rows, seed))
    data.name = name
    return data


def file_totals(data: io.BytesIO) -> tuple[int, decimal.Decimal]:
    """A claims_file's claims and total paid amount, read from its CSV."""
    rows = list(csv.DictReader(io.StringIO(data.getvalue().decode())))
    return len(rows), sum((decimal.Decimal(r["paid"]) for r in rows), decimal.Decimal(0))


def counts(code: str) -> dict[str, int]:
    from tpa.snowflake import count_rows

    return asyncio.run(count_rows(code))


def staged(code: str) -> list[str]:
    from tpa.snowflake import list_stage

    return [f.path for f in asyncio.run(list_stage(f"{code.lower()}/"))]


def break_mapping(tpa: Tpa) -> None:
    """A wrong date format for the service date: the silver MERGE fails parsing the dates."""
    FieldMapping.objects.filter(tpa=tpa, target_column="SERVICE_DATE").update(argument="MM/DD/YYYY")


def fix_mapping(tpa: Tpa) -> None:
    FieldMapping.objects.filter(tpa=tpa, target_column="SERVICE_DATE").update(argument="YYYY-MM-DD")


def work() -> None:
    """Run every queued task with the real worker, then return."""
    call_command("db_worker", "--batch", "--no-reload", "--no-startup-delay", "--interval", "0.1", verbosity=0)
