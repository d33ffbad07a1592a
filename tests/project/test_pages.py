from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_it_signs_in_with_the_right_password_only(member) -> None:
    client = Client()
    bad = client.post("/accounts/login/", {"username": "bob", "password": "wrong"})
    assert bad.status_code == 200
    assert "didn't match" in bad.content.decode()
    good = client.post("/accounts/login/", {"username": "bob", "password": "correct horse battery staple"})
    assert good.status_code == 302
    assert client.get("/").status_code == 200


def test_it_refuses_a_login_post_without_csrf_token(member) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "bob", "password": "correct horse battery staple"})
    assert response.status_code == 403


def test_it_sends_a_content_security_policy_without_inline_scripts(member_client) -> None:
    response = member_client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in response.content.decode()


def test_it_answers_health_without_login() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_it_pings_every_source_in_a_deep_health_check() -> None:
    response = Client().get("/health?deep=1")
    body = response.json()
    assert response.status_code == 200, body
    assert set(body["sources"]) == {"postgres", "snowflake"}
    assert all(source["ok"] for source in body["sources"].values())


def test_it_shows_metrics_to_staff_only(owner_client, member_client) -> None:
    assert member_client.get("/metrics").status_code == 403
    response = owner_client.get("/metrics")
    assert response.status_code == 200
    assert "fanout_source_calls_total" in response.content.decode()
