"""The signed-in request reads who is signed in from a short-lived copy in the process
(project.auth, project.localcache), and a logout or a password change still takes effect
on the very next request, from any process."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client

from project.localcache import AUTH, redis_url
from tests.conftest import PASSWORD

# Committed as in production: the generation moves after the commit (transaction.on_commit).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(redis_url() is None, reason="without Redis nothing is kept in the process"),
]


def signed_in(user: User) -> Client:
    client = Client()
    assert client.post("/accounts/login/", {"username": user.username, "password": PASSWORD}).status_code == 302
    return client


def copy_of(client: Client) -> Client:
    """Another browser holding the same session cookie (a second tab, or a stolen cookie)."""
    other = Client()
    name = settings.SESSION_COOKIE_NAME
    other.cookies[name] = client.cookies[name].value
    return other


def test_it_answers_a_known_session_without_reading_the_session_or_the_user_again(
    member: User, django_assert_num_queries
):
    client = signed_in(member)
    assert client.get("/api/me").json()["username"] == "bob"
    with django_assert_num_queries(0):  # no session, no user, no groups query
        assert client.get("/api/me").json() == {"username": "bob", "is_staff": False, "groups": ["Analysts"]}


def test_it_signs_a_session_out_everywhere_at_once_on_logout(member: User):
    client = signed_in(member)
    tab = copy_of(client)
    assert tab.get("/api/me").status_code == 200
    assert client.post("/accounts/logout/").status_code in {200, 302}
    assert tab.get("/api/me").status_code == 401
    assert tab.get("/reports/").status_code == 302  # pages send it to the login page


def test_it_signs_sessions_out_at_once_when_the_password_changes(member: User):
    client = signed_in(member)
    assert client.get("/api/me").status_code == 200
    member.set_password("a brand new passphrase")
    member.save()  # as the admin, or `manage.py changepassword` in another process, would
    assert client.get("/api/me").status_code == 401


def test_it_stops_trusting_a_deactivated_user_at_once(member: User):
    client = signed_in(member)
    assert client.get("/api/me").status_code == 200
    User.objects.filter(pk=member.pk).update(is_active=False)
    AUTH.bump()  # what a save through the ORM does; a bare UPDATE must say so itself
    assert client.get("/api/me").status_code == 401


def test_it_shows_a_change_of_groups_at_once(member: User, analysts: Group):
    client = signed_in(member)
    assert client.get("/api/me").json()["groups"] == ["Analysts"]
    member.groups.remove(analysts)
    assert client.get("/api/me").json()["groups"] == []
    member.groups.add(Group.objects.create(name="Operations"))
    assert client.get("/api/me").json()["groups"] == ["Operations"]


def test_it_reads_the_session_again_when_another_process_moved_the_generation(member: User, django_assert_num_queries):
    client = signed_in(member)
    client.get("/api/me")
    redis.Redis.from_url(str(redis_url())).incr(AUTH.key)  # another worker saved a session or a user
    with django_assert_num_queries(3):  # session, user, and the view's groups query
        assert client.get("/api/me").status_code == 200
