"""The TPA list and master data are served from the process once warm: no database round
trip for the list, the master data, the user's rights or which TPAs they may see; a right
taken away, or a TPA added, shows on the very next request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from project.localcache import redis_url
from tpa import cache, demo
from tpa.models import Tpa

# Committed as in production: the auth generation moves after the commit (transaction.on_commit).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(redis_url() is None, reason="without Redis nothing is kept in the process"),
]


@pytest.fixture(autouse=True)
def forget_the_tpas() -> Iterator[None]:
    """The TPAs go with the test's database; the list cached in Redis must go with them."""
    yield
    assert cache.invalidate() == []


def make_tpa(code: str) -> Tpa:
    """A TPA, saved as the admin saves one: the caches are told once it is committed."""
    tpa = Tpa.objects.create(code=code, name=f"{code} Benefits", target_schema=demo.claims_schema())
    assert cache.invalidate() == []
    return tpa


def codes(client: Client) -> list[str]:
    response = client.get("/api/tpa/tpas")
    assert response.status_code == 200, response.content
    return [tpa["code"] for tpa in response.json()]


@pytest.fixture
def view_tpa() -> Permission:
    return Permission.objects.get(content_type__app_label="tpa", codename="view_tpa")


def test_it_serves_the_list_and_master_data_without_a_query_once_warm(
    owner_client: Client, member: User, member_client: Client, view_tpa: Permission, django_assert_num_queries
) -> None:
    make_tpa("ACME")
    member.user_permissions.add(view_tpa)
    for client in (owner_client, member_client):
        assert codes(client) == ["ACME"]
        assert client.get("/api/tpa/master-data").status_code == 200
        with django_assert_num_queries(0):  # no session, user, permission, visibility or list query
            assert codes(client) == ["ACME"]
            master = client.get("/api/tpa/master-data").json()
        assert list(master["data"]) == ["ACME"] and master["cached"] is True


def test_it_refuses_the_list_at_once_when_the_users_permission_is_taken_away(
    member: User, member_client: Client, view_tpa: Permission
) -> None:
    make_tpa("ACME")
    member.user_permissions.add(view_tpa)
    assert codes(member_client) == ["ACME"]
    member.user_permissions.remove(view_tpa)
    assert member_client.get("/api/tpa/tpas").status_code == 403
    assert member_client.get("/api/tpa/master-data").status_code == 403


def test_it_follows_a_change_of_the_groups_permissions_at_once(
    member_client: Client, analysts: Group, view_tpa: Permission
) -> None:
    make_tpa("ACME")
    analysts.permissions.add(view_tpa)  # bob is an analyst
    assert codes(member_client) == ["ACME"]
    analysts.permissions.clear()
    assert member_client.get("/api/tpa/tpas").status_code == 403
    view_tpa.group_set.add(analysts)  # from the permission's side, as the admin's group page may
    assert codes(member_client) == ["ACME"]


def test_it_shows_a_new_tpa_at_once_to_a_user_whose_rights_are_kept(
    member: User, member_client: Client, view_tpa: Permission
) -> None:
    make_tpa("ACME")
    member.user_permissions.add(view_tpa)
    assert codes(member_client) == ["ACME"]
    make_tpa("BETA")
    assert codes(member_client) == ["ACME", "BETA"]
    assert sorted(member_client.get("/api/tpa/master-data").json()["data"]) == ["ACME", "BETA"]


def test_it_still_shows_the_outsider_nothing_once_warm(owner_client: Client, outsider_client: Client) -> None:
    make_tpa("ACME")
    assert codes(owner_client) == ["ACME"]
    for _ in range(2):
        assert outsider_client.get("/api/tpa/tpas").status_code == 403
        assert outsider_client.get("/api/tpa/master-data").status_code == 403


def test_it_pages_the_list_and_names_each_tpas_fields(owner_client: Client) -> None:
    for code in ("ACME", "BETA", "CORE"):
        make_tpa(code)
    owner_client.get("/api/tpa/tpas")  # warm: the page below is served from the process
    response = owner_client.get("/api/tpa/tpas?limit=2&offset=1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Total-Count"] == "3"
    assert response.json() == [
        {
            "code": code,
            "name": f"{code} Benefits",
            "active": True,
            "contact_name": "",
            "contact_email": "",
            "target_schema": str(demo.claims_schema()),
        }
        for code in ("BETA", "CORE")
    ]
    refused = owner_client.get("/api/tpa/tpas?limit=0")
    assert refused.status_code == 400
    assert "limit must be 1 to 500" in refused.json()["detail"]
