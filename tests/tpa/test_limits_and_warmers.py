from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User
from django.core.cache import cache as django_cache
from django.core.management import call_command
from django.db import connection
from django.test import Client

from project import cache, ratelimit
from project.sources import inflight
from tests.tpa.conftest import ACME, claims_file, staged, work
from tpa.cache import master_data, register_warmers
from tpa.models import FieldMapping, IngestionFile, PipelineRun


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    # Cache tests elsewhere replace the warmers with their own: put the app's back.
    register_warmers()
    cache.flush_stats()
    django_cache.clear()
    yield
    django_cache.clear()


@pytest.fixture
def once_an_hour(settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "upload": "1/h", "pipeline-start": "1/h"}


def assert_limited(response) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 3600


# --- Rate limits ---------------------------------------------------------------------------


def test_it_limits_uploads_on_the_page_and_the_api_and_stages_nothing_past_the_limit(
    make_tpa, owner: User, owner_client: Client, once_an_hour: None
) -> None:
    tpa = make_tpa()
    first = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(seed=1, name="jan.csv")})
    assert first.status_code == 302

    page = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(seed=2, name="feb.csv")})
    assert_limited(page)
    assert "the limit is 1 per hour" in page.content.decode()
    api = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(seed=3, name="mar.csv")})
    assert_limited(api)
    assert "the limit is 1 per hour" in api.json()["detail"]
    assert list(IngestionFile.objects.filter(tpa=tpa).values_list("original_name", flat=True)) == ["jan.csv"]
    assert [path.rsplit("/", 1)[1] for path in staged(tpa.code)] == ["jan.csv"]

    ratelimit.reset("upload", f"user:{owner.pk}")  # the hour is over
    again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(seed=3, name="mar.csv")})
    assert again.status_code == 201
    names = IngestionFile.objects.filter(tpa=tpa).values_list("original_name", flat=True)
    assert sorted(names) == ["jan.csv", "mar.csv"]


@pytest.mark.django_db(transaction=True)
def test_it_limits_pipeline_starts_on_the_page_and_the_api(
    make_tpa, owner: User, owner_client: Client, once_an_hour: None
) -> None:
    tpa = make_tpa()
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(seed=1, name="jan.csv")})
    assert owner_client.post(f"/tpa/{tpa.code}/runs/").status_code == 303
    work()
    ratelimit.reset("upload", f"user:{owner.pk}")
    owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(seed=2, name="feb.csv")})

    assert_limited(owner_client.post(f"/tpa/{tpa.code}/runs/"))
    assert_limited(owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs"))
    assert_limited(owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs/sync?timeout=0"))
    assert PipelineRun.objects.filter(tpa=tpa).count() == 1
    assert IngestionFile.objects.get(original_name="feb.csv").status == "uploaded"  # still waiting

    ratelimit.reset("pipeline-start", f"user:{owner.pk}")
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/runs").status_code == 202
    assert PipelineRun.objects.filter(tpa=tpa).count() == 2


# --- Labels on the operations page ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_names_the_run_step_and_who_started_it_for_each_pipeline_call(
    make_tpa, owner_client: Client, monkeypatch
) -> None:
    tpa = make_tpa()
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file()})
    owner_client.post(f"/tpa/{tpa.code}/runs/")
    run = PipelineRun.objects.get(tpa=tpa)
    # What the operations page would list while each call runs.
    listed: list[tuple[str, str]] = []
    start = inflight.start

    def record(*args, **kwargs) -> inflight.Running:
        running = start(*args, **kwargs)
        listed.append((running.what, running.who))
        return running

    monkeypatch.setattr(inflight, "start", record)
    work()
    steps = [f"pipeline run {run.pk} {tpa.code} / {step}" for step in ("bronze", "silver", "gold")]
    assert [what for what, _ in listed if what.startswith(f"pipeline run {run.pk} ")] == steps
    assert {who for what, who in listed if what in steps} == {"alice"}


# --- Warmers -------------------------------------------------------------------------------


def test_it_warms_the_tpa_list_from_the_command_and_serves_the_page_from_the_cache(
    make_tpa, owner_client: Client, capsys, django_assert_num_queries
) -> None:
    make_tpa(name="Warmed Benefits")
    call_command("cache_warm", "tpa-list", "master-data")
    out = capsys.readouterr().out
    assert "tpa-list: warmed" in out and "master-data: warmed" in out

    loads = cache.STATS["tpa-list"].loads
    # The session, the user, the file counts: the TPAs themselves come from the cache.
    with django_assert_num_queries(3) as queries:
        page = owner_client.get("/tpa/").content.decode()
    assert "Warmed Benefits" in page
    assert not [q["sql"] for q in queries.captured_queries if 'FROM "tpa_tpa"' in q["sql"]]
    assert cache.STATS["tpa-list"].loads == loads  # a hit: nothing reloaded


@pytest.fixture
def cache_admin(owner: User) -> User:
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    return owner


def test_it_serves_every_tpas_master_data_and_reloads_it_when_fresh(
    make_tpa, cache_admin: User, owner_client: Client, member: User, member_client: Client
) -> None:
    member.user_permissions.add(Permission.objects.get(codename="view_tpa"))  # sees TPAs
    acme, other = make_tpa(), make_tpa()
    warmed = owner_client.post("/admin/caches/master-data/warm/", follow=True)
    assert "Warmed master-data" in warmed.content.decode()

    body = member_client.get("/api/tpa/master-data").json()
    assert body["cached"] is True
    assert {acme.code, other.code} <= set(body["data"])
    mappings = body["data"][acme.code]["mappings"]
    assert [(m["source_column"], m["target_column"], m["argument"]) for m in mappings] == [
        (source, target, argument) for source, target, _, argument in ACME.mappings
    ]
    assert body["data"][other.code]["table_name"] == body["data"][acme.code]["table_name"]

    # An edit behind Fanout's back (raw SQL: no signal, no invalidation): cached until ?fresh=1.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {FieldMapping._meta.db_table} SET argument = %s WHERE tpa_id = %s AND target_column = %s",
            ["MM/DD/YYYY", acme.pk, "SERVICE_DATE"],
        )

    def service_date(data: dict) -> str:
        return next(m["argument"] for m in data[acme.code]["mappings"] if m["target_column"] == "SERVICE_DATE")

    assert service_date(member_client.get("/api/tpa/master-data").json()["data"]) == "YYYY-MM-DD"
    fresh = member_client.get("/api/tpa/master-data?fresh=1").json()
    assert (service_date(fresh["data"]), fresh["cached"]) == ("MM/DD/YYYY", False)
    # The TPA's own entry, which uploads and the pipeline read, was refreshed with it.
    acme_data = async_to_sync(master_data)(acme.code)
    assert next(m.argument for m in acme_data.mappings if m.target_column == "SERVICE_DATE") == "MM/DD/YYYY"
