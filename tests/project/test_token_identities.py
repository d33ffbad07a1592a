"""Bearer tokens built to become someone else, or to make the auth server work for nothing:
each is refused or harmless, with what the client sees, and no local account or group is
changed. The auth server is a real RFC 7662 endpoint on loopback."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import AsyncClient, Client

from project.models import TokenIdentity
from tests.project.test_tokens import ISSUER, IntrospectionServer, active, bearer, link

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_cache")]


def accounts() -> list[tuple[str, bool, bool, list[str]]]:
    return [
        (user.username, user.is_staff, user.is_superuser, sorted(group.name for group in user.groups.all()))
        for user in User.objects.order_by("username").prefetch_related("groups")
    ]


@pytest.mark.parametrize("rights", ["staff", "superuser"])
def test_it_never_adopts_a_local_account_by_its_username(auth_server: IntrospectionServer, owner, rights) -> None:
    owner.is_superuser = rights == "superuser"
    owner.save()
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    before = accounts()
    auth_server.claims["tok-impostor"] = active("alice", sub="idp-4711", groups=["Analysts"])

    me = Client().get("/api/me", headers=bearer("tok-impostor"))
    cache_api = Client().get("/api/cache", headers=bearer("tok-impostor"))

    assert me.status_code == 200
    assert me.json()["username"].startswith("alice~") and me.json()["username"] != "alice"
    assert cache_api.status_code == 403
    identity = TokenIdentity.objects.get(issuer=ISSUER, subject="idp-4711")
    assert identity.user.username == me.json()["username"]
    assert not identity.user.is_staff and not identity.user.is_superuser
    assert [account for account in accounts() if account[0] != identity.user.username] == before


def test_it_reaches_a_staff_account_only_through_an_explicit_link(auth_server: IntrospectionServer, owner) -> None:
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    auth_server.claims["tok-linked"] = active("whatever-the-idp-calls-her", sub="idp-alice")
    link(owner, "idp-alice")

    response = Client().get("/api/cache", headers=bearer("tok-linked"))

    assert response.status_code == 200
    assert Client().get("/api/me", headers=bearer("tok-linked")).json()["username"] == "alice"


def test_it_tells_the_same_subject_of_two_issuers_apart(auth_server: IntrospectionServer, owner) -> None:
    link(owner, "shared-subject")
    auth_server.claims["tok-ours"] = active("x", sub="shared-subject")
    auth_server.claims["tok-theirs"] = active("x", sub="shared-subject", iss="https://other-idp.example.test")

    ours = Client().get("/api/me", headers=bearer("tok-ours")).json()["username"]
    theirs = Client().get("/api/me", headers=bearer("tok-theirs")).json()["username"]

    assert ours == "alice"
    assert theirs == "x" and not User.objects.get(username="x").is_staff


def test_it_refuses_an_active_token_without_a_subject(auth_server: IntrospectionServer, owner) -> None:
    claims = active("alice")
    del claims["sub"]
    auth_server.claims["tok-nobody"] = claims
    before = accounts()

    response = Client().get("/api/me", headers=bearer("tok-nobody"))

    assert response.status_code == 401
    assert accounts() == before


def test_it_grants_only_allowed_groups_and_never_removes_local_ones(
    auth_server: IntrospectionServer, member, settings
) -> None:
    settings.TOKEN_GROUPS = {"idp-ops": "Operations"}
    Group.objects.create(name="Operations")
    Group.objects.create(name="Admins")
    link(member)
    client = Client()

    auth_server.claims["tok-1"] = active("bob", groups=["idp-ops", "Admins"])
    assert client.get("/api/me", headers=bearer("tok-1")).status_code == 200
    assert sorted(member.groups.values_list("name", flat=True)) == ["Analysts", "Operations"]

    # A later token claims nothing: what a token granted goes, what was assigned locally stays.
    auth_server.claims["tok-2"] = active("bob", groups=[])
    assert client.get("/api/me", headers=bearer("tok-2")).status_code == 200
    assert sorted(member.groups.values_list("name", flat=True)) == ["Analysts"]


async def test_it_links_one_new_user_when_two_tokens_of_one_subject_arrive_at_once(
    auth_server: IntrospectionServer,
) -> None:
    auth_server.claims["tok-a"] = active("kim")
    auth_server.claims["tok-b"] = active("kim")
    client = AsyncClient()

    first, second = await asyncio.gather(
        client.get("/api/me", headers=bearer("tok-a")), client.get("/api/me", headers=bearer("tok-b"))
    )

    assert first.status_code == second.status_code == 200
    assert first.json()["username"] == second.json()["username"] == "kim"
    assert await TokenIdentity.objects.filter(subject="sub-kim").acount() == 1
    assert await User.objects.filter(username__startswith="kim").acount() == 1


MALFORMED = {
    "empty": "Bearer",
    "blank": "Bearer    ",
    "two words": "Bearer abc def",
    "not ascii": "Bearer tök",
    "quote": 'Bearer ab"c',
    "too long": "Bearer " + "a" * 9000,
}


@pytest.mark.parametrize("configured", [True, False], ids=["introspection configured", "not configured"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_it_refuses_an_empty_or_malformed_token_locally(
    auth_server: IntrospectionServer, settings, case: str, configured: bool
) -> None:
    if not configured:
        settings.TOKEN_INTROSPECTION_URL = ""
    for path in ("/api/me", "/"):
        response = Client().get(path, headers={"Authorization": MALFORMED[case]})
        assert response.status_code == 401, (path, response.content)
        assert response["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        assert "bearer token is" in response.json()["detail"]
    assert sum(auth_server.calls.values()) == 0


def test_it_answers_401_not_503_when_bearer_tokens_are_not_configured(settings) -> None:
    settings.TOKEN_INTROSPECTION_URL = ""
    response = Client().get("/api/me", headers=bearer("well-formed-token"))
    assert response.status_code == 401
    assert response.json()["detail"] == "Bearer tokens are not accepted here: TOKEN_INTROSPECTION_URL is not set."
    assert response["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_it_says_how_to_authenticate_on_every_401(auth_server: IntrospectionServer) -> None:
    anonymous = Client().get("/api/me")
    unknown = Client().get("/api/me", headers=bearer("tok-unknown"))
    assert anonymous.status_code == unknown.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Bearer"
    assert unknown["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_it_limits_each_clients_introspection_calls_but_not_its_cached_tokens(
    auth_server: IntrospectionServer, settings
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token-introspection": "5/m"}
    auth_server.delay = 0
    auth_server.claims["tok-good"] = active("lee")
    client = Client()
    assert client.get("/api/me", headers=bearer("tok-good")).status_code == 200

    answers = [client.get("/api/me", headers=bearer(f"tok-invented-{n}")) for n in range(20)]

    assert [answer.status_code for answer in answers] == [401] * 4 + [429] * 16
    assert "Too many requests (token-introspection)" in answers[-1].json()["detail"]
    assert int(answers[-1]["Retry-After"]) >= 1
    assert sum(auth_server.calls.values()) == 5  # the good token's call and four invented ones
    # A token whose verdict is cached costs no call, so the client's own token still works.
    assert client.get("/api/me", headers=bearer("tok-good")).status_code == 200
    assert client.get("/api/me", headers=bearer("tok-invented-0")).status_code == 401  # negatively cached
    assert sum(auth_server.calls.values()) == 5
