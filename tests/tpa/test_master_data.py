from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from project import cache
from tpa.cache import TPA_LIST, master_data, tpa_list
from tpa.models import FieldMapping, Tpa


# Invalidation waits for the commit, so these tests commit (transaction=True).
@pytest.mark.django_db(transaction=True)
def test_it_shows_an_admin_edit_in_the_tpa_list(make_tpa, owner, owner_client) -> None:
    owner.is_superuser = True
    owner.save()
    tpa = make_tpa(name="Old Name Benefits")
    assert "Old Name Benefits" in owner_client.get("/tpa/").content.decode()  # now cached
    change = owner_client.get(f"/admin/tpa/tpa/{tpa.pk}/change/")
    assert change.status_code == 200
    form = {
        "code": tpa.code,
        "name": "New Name Benefits",
        "active": "on",
        "contact_name": "",
        "contact_email": "",
        "target_schema": tpa.target_schema_id,
        "mappings-TOTAL_FORMS": "0",
        "mappings-INITIAL_FORMS": "0",
        "mappings-MIN_NUM_FORMS": "0",
        "mappings-MAX_NUM_FORMS": "1000",
    }
    saved = owner_client.post(f"/admin/tpa/tpa/{tpa.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    page = owner_client.get("/tpa/").content.decode()
    assert "New Name Benefits" in page and "Old Name Benefits" not in page


@pytest.mark.django_db(transaction=True)
async def test_it_loads_a_cold_tpa_list_once_for_concurrent_readers(make_tpa) -> None:
    await sync_to_async(make_tpa)()
    await cache.ainvalidate(TPA_LIST)
    before = cache.STATS[TPA_LIST].loads
    lists = await asyncio.gather(*(tpa_list() for _ in range(20)))
    assert cache.STATS[TPA_LIST].loads == before + 1
    assert all(result == lists[0] for result in lists) and lists[0]


@pytest.mark.django_db(transaction=True)
def test_it_lets_staff_edit_mappings_and_refuses_a_bad_date_format(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    page = owner_client.get(f"/tpa/{tpa.code}/mappings/")
    assert page.status_code == 200
    mappings = list(FieldMapping.objects.filter(tpa=tpa).order_by("id"))
    form = mapping_form(tpa)
    date = next(n for n, m in enumerate(mappings) if m.target_column == "SERVICE_DATE")
    refused = owner_client.post(f"/tpa/{tpa.code}/mappings/", form | {f"form-{date}-argument": "%Y'); DROP"})
    assert "Give a date format made of YYYY" in refused.content.decode()
    before = async_to_sync(master_data)(tpa.code)  # cached now
    saved = owner_client.post(f"/tpa/{tpa.code}/mappings/", form | {f"form-{date}-argument": "DD.MM.YYYY"}, follow=True)
    assert "Mappings saved. The next run uses them." in saved.content.decode()
    assert FieldMapping.objects.get(pk=mappings[date].pk).argument == "DD.MM.YYYY"
    after = async_to_sync(master_data)(tpa.code)  # read-your-writes: the save invalidated the cache
    assert after.mappings_version == before.mappings_version + 1
    assert "DD.MM.YYYY" in [m.argument for m in after.mappings]
    assert "DD.MM.YYYY" in owner_client.get(f"/tpa/{tpa.code}/").content.decode()


def mapping_form(tpa: Tpa) -> dict[str, str]:
    mappings = list(FieldMapping.objects.filter(tpa=tpa).order_by("id"))
    form = {
        "form-TOTAL_FORMS": str(len(mappings)),
        "form-INITIAL_FORMS": str(len(mappings)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
    }
    for n, m in enumerate(mappings):
        form |= {
            f"form-{n}-id": str(m.pk),
            f"form-{n}-source_column": m.source_column,
            f"form-{n}-target_column": m.target_column,
            f"form-{n}-transform": m.transform,
            f"form-{n}-argument": m.argument,
        }
    return form


@pytest.mark.django_db(transaction=True)
def test_it_tells_the_person_who_saved_when_the_cache_could_not_be_told(make_tpa, owner_client, settings) -> None:
    tpa = make_tpa()
    # A Redis that is not there: django-redis ignores the error, so invalidate() reaches nothing.
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5, "IGNORE_EXCEPTIONS": True},
        }
    }
    form = mapping_form(tpa) | {"form-0-transform": "copy"}
    saved = owner_client.post(f"/tpa/{tpa.code}/mappings/", form, follow=True)
    page = saved.content.decode()
    assert "Saved, but the cache could not be told (master-data)" in page
    assert "Runs are not affected" in page and "Mappings saved." not in page
    assert FieldMapping.objects.filter(tpa=tpa, transform="copy").count() == 1  # the save stands


@pytest.mark.django_db(transaction=True)
def test_it_shows_and_saves_the_mappings_in_a_fixed_number_of_queries(
    make_tpa, owner_client, django_assert_num_queries, django_assert_max_num_queries
) -> None:
    tpa = make_tpa()
    # Session, user, TPA, the schema's columns, the mappings: whatever the number of forms.
    with django_assert_num_queries(5):
        assert owner_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 200
    form = mapping_form(tpa) | {"form-0-transform": "copy"}
    # ... then BEGIN, the one changed mapping, the mappings version bump, COMMIT (the session
    # and the user may come from the process's copy, project.localcache: at most nine).
    with django_assert_max_num_queries(9):
        assert owner_client.post(f"/tpa/{tpa.code}/mappings/", form).status_code == 302
    # One form fewer, the same number: nothing is read per form.
    FieldMapping.objects.filter(tpa=tpa, target_column="CLAIM_STATUS").delete()
    with django_assert_max_num_queries(5):
        assert owner_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 200
