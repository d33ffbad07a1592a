from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache as django_cache
from django.db import connection
from django.test import AsyncClient, Client

from project import cache, tokens
from project.models import TokenIdentity


class IntrospectionServer:
    """A real RFC 7662 endpoint on loopback that counts the calls it gets per token."""

    def __init__(self, delay: float = 0.0) -> None:
        self.claims: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.credentials: list[str | None] = []
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                token = parse_qs(self.rfile.read(length).decode()).get("token", [""])[0]
                server.calls[token] += 1
                server.credentials.append(self.headers.get("Authorization"))
                time.sleep(server.delay)  # an auth server that takes its time: callers overlap
                body = json.dumps(server.claims.get(token, {"active": False})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    django_cache.clear()
    yield
    django_cache.clear()


ISSUER = "https://idp.example.test"


def active(username: str, **claims: Any) -> dict[str, Any]:
    """What the auth server says of an active token: its subject is `sub-<username>`."""
    return {
        "active": True,
        "iss": ISSUER,
        "sub": f"sub-{username}",
        "username": username,
        "exp": int(time.time()) + 3600,
        **claims,
    }


def link(user: User, subject: str | None = None) -> TokenIdentity:
    """What an administrator does in the admin: this identity is that local account."""
    return TokenIdentity.objects.create(issuer=ISSUER, subject=subject or f"sub-{user.username}", user=user)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the token clock forward instead of sleeping."""
    monkeypatch.setattr(tokens, "_now", lambda: time.time() + seconds)


@pytest.mark.django_db(transaction=True)
async def test_it_makes_one_introspection_call_for_200_concurrent_requests(auth_server) -> None:
    auth_server.claims["tok-new"] = active("dana")
    client = AsyncClient()
    responses = await asyncio.gather(*(client.get("/api/me", headers=bearer("tok-new")) for _ in range(200)))
    assert {response.status_code for response in responses} == {200}
    assert {response.json()["username"] for response in responses} == {"dana"}
    assert auth_server.calls["tok-new"] == 1
    assert auth_server.credentials[0] and auth_server.credentials[0].startswith("Basic ")


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_introspection_call_across_processes(auth_server, settings) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("needs a shared cache (REDIS_URL)")
    auth_server.claims["tok-shared"] = active("erin")
    auth_server.delay = 1.0
    script = textwrap.dedent(
        """
        import asyncio, django
        django.setup()
        from project import tokens
        async def main():
            users = await asyncio.gather(*(tokens.verify("tok-shared") for _ in range(20)))
            print(sorted({user.username for user in users}))
        asyncio.run(main())
        """
    )
    database = connection.settings_dict
    env = {
        **os.environ,
        "TOKEN_INTROSPECTION_URL": auth_server.url,
        "DATABASE_URL": f"postgresql://{database['USER']}:@/{database['NAME']}?host={database['HOST']}",
    }
    processes = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert outputs == ["['erin']"] * 4
    assert auth_server.calls["tok-shared"] == 1


@pytest.mark.django_db(transaction=True)
def test_it_does_not_verify_a_cached_token_again_within_its_window(auth_server, monkeypatch) -> None:
    auth_server.claims["tok-a"] = active("frank")
    client = Client()
    for _ in range(3):
        assert client.get("/api/me", headers=bearer("tok-a")).status_code == 200
    later(monkeypatch, 59)
    assert client.get("/api/me", headers=bearer("tok-a")).status_code == 200
    assert auth_server.calls["tok-a"] == 1
    later(monkeypatch, 61)  # the 60 s cap, although the token lives an hour
    assert client.get("/api/me", headers=bearer("tok-a")).status_code == 200
    assert auth_server.calls["tok-a"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_verifies_an_expired_token_again(auth_server, monkeypatch) -> None:
    auth_server.claims["tok-short"] = active("gina", exp=int(time.time()) + 20)
    client = Client()
    assert client.get("/api/me", headers=bearer("tok-short")).status_code == 200
    assert client.get("/api/me", headers=bearer("tok-short")).status_code == 200
    assert auth_server.calls["tok-short"] == 1
    later(monkeypatch, 25)
    auth_server.claims["tok-short"] = {"active": False}  # the auth server agrees it has expired
    response = client.get("/api/me", headers=bearer("tok-short"))
    assert response.status_code == 401
    assert auth_server.calls["tok-short"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_inactive_token_and_does_not_ask_again_within_the_negative_window(
    auth_server, settings, monkeypatch
) -> None:
    settings.TOKEN_NEGATIVE_TTL = 10
    client = Client()
    for _ in range(5):
        response = client.get("/api/me", headers=bearer("tok-revoked"))
        assert response.status_code == 401
    assert auth_server.calls["tok-revoked"] == 1
    later(monkeypatch, 11)
    assert client.get("/api/me", headers=bearer("tok-revoked")).status_code == 401
    assert auth_server.calls["tok-revoked"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_for_bearer_requests_when_the_auth_server_is_down(auth_server, owner_client) -> None:
    auth_server.stop()
    response = Client().get("/api/me", headers=bearer("tok-any"))
    assert response.status_code == 503
    assert "auth server cannot be reached" in response.json()["detail"]
    page = Client().get("/", headers=bearer("tok-any"))
    assert page.status_code == 503
    session = owner_client.get("/api/me")
    assert session.status_code == 200
    assert session.json()["username"] == "alice"
    assert owner_client.get("/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_it_maps_allowed_token_groups_to_local_groups_so_permissions_apply(auth_server, owner, settings) -> None:
    settings.TOKEN_GROUPS = {"idp-cache-admins": "Cache admins"}
    admins = Group.objects.create(name="Cache admins")
    admins.permissions.add(Permission.objects.get(codename="control_cache"))
    link(owner)
    auth_server.claims["tok-alice"] = active("alice", groups=["idp-cache-admins", "Unknown group"])
    auth_server.claims["tok-new-user"] = active("harry", groups=["idp-cache-admins"])
    client = Client()
    assert client.get("/api/cache", headers=bearer("tok-alice")).status_code == 200
    assert list(owner.groups.values_list("name", flat=True)) == ["Cache admins"]
    # A new user is created on first sight, but is not staff: the permission alone is not enough.
    assert client.get("/api/cache", headers=bearer("tok-new-user")).status_code == 403
    harry = User.objects.get(username="harry")
    assert not harry.has_usable_password() and not harry.is_staff
    assert list(harry.groups.values_list("name", flat=True)) == ["Cache admins"]


@pytest.mark.django_db(transaction=True)
def test_it_refuses_the_token_of_an_inactive_user(auth_server, member) -> None:
    member.is_active = False
    member.save()
    link(member)
    auth_server.claims["tok-bob"] = active("bob")
    assert Client().get("/api/me", headers=bearer("tok-bob")).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_known_token_from_the_process_and_refuses_it_at_once_when_its_user_is_deactivated(
    auth_server, member, django_assert_num_queries
) -> None:
    link(member)
    auth_server.claims["tok-bob"] = active("bob")
    client = Client()
    assert client.get("/api/me", headers=bearer("tok-bob")).status_code == 200
    with django_assert_num_queries(0):  # the verdict, the user and their groups: kept in the process
        assert client.get("/api/me", headers=bearer("tok-bob")).json()["username"] == "bob"
    member.is_active = False
    member.save()  # in any process: the auth generation moves
    assert client.get("/api/me", headers=bearer("tok-bob")).status_code == 401
    assert auth_server.calls["tok-bob"] == 1


@pytest.mark.django_db(transaction=True)
async def test_the_next_request_in_the_same_task_sees_the_verdicts_another_process_dropped(auth_server, member) -> None:
    # Django's AsyncClient answers each request in the test's own task, as one task could
    # serve requests one after another: what one request read of the shared generations
    # must not answer for the next.
    import redis

    from project import localcache

    if localcache.redis_url() is None:
        pytest.skip("without Redis nothing is kept in the process")
    await sync_to_async(link)(member)
    auth_server.claims["tok-bob"] = active("bob")
    client = AsyncClient()
    for _ in range(2):  # the second from the process: the verdict's generation came with the auth read
        assert (await client.get("/api/me", headers=bearer("tok-bob"))).status_code == 200
    auth_server.claims["tok-bob"] = {"active": False}  # revoked at the auth server
    # Another process drops every verdict (the tokens namespace), not through this task.
    redis.Redis.from_url(str(localcache.redis_url())).incr(localcache.namespace_generation("tokens").key)
    assert (await client.get("/api/me", headers=bearer("tok-bob"))).status_code == 401
    assert auth_server.calls["tok-bob"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_accepts_bearer_tokens_on_pages_and_skips_csrf_for_them(auth_server, owner) -> None:
    owner.user_permissions.add(Permission.objects.get(codename="control_cache"))
    link(owner)
    auth_server.claims["tok-alice"] = active("alice")
    client = Client(enforce_csrf_checks=True)
    assert client.get("/", headers=bearer("tok-alice")).status_code == 200
    response = client.post("/api/cache/tpa-list/invalidate", headers=bearer("tok-alice"))
    assert response.status_code == 200, response.content
    assert client.get("/").status_code == 302  # no session was created by the token


@pytest.mark.django_db(transaction=True)
def test_it_never_stores_or_logs_the_token_in_clear(auth_server, caplog, settings) -> None:
    token = "tok-secret-4f2a9c"
    auth_server.claims[token] = active("ivy")
    assert Client().get("/api/me", headers=bearer(token)).status_code == 200
    assert Client().get("/api/me", headers=bearer("tok-secret-unknown")).status_code == 401
    assert token not in caplog.text and "tok-secret-unknown" not in caplog.text
    if hasattr(django_cache, "iter_keys"):
        keys = list(django_cache.iter_keys("*"))
        assert keys
        stored = repr(keys) + repr(django_cache.get_many(keys))
        assert token not in stored and "tok-secret" not in stored
    entry = cache.make_key("tokens", tokens.token_hash(token))
    assert token not in entry
