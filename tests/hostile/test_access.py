"""Every URL tried by a signed-in user who may see nothing: 403/404 (or the admin's login),
never the data. The URLs come from the resolver, so a new one is tried as soon as it exists."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.hostile.conftest import SECRET, api_operations, fill, routes

pytestmark = pytest.mark.django_db

# 422: the API refuses a POST without its body before it looks anything up (same for any code).
REFUSED = {403, 404, 405, 422}


def test_it_refuses_every_object_url_to_the_outsider(secret_objects: dict[str, Any], outsider_client: Client) -> None:
    leaks: list[str] = []
    tried = 0
    for route in routes(secret_objects):
        if route.name.endswith("logout"):
            continue  # it would sign the outsider out, and everything after would be the login page
        if route.name in {name for name, _ in KNOWN_OPEN.values()}:
            continue  # an xfail of its own below
        for method in ("get", "post"):
            response = getattr(outsider_client, method)(route.url)
            tried += 1
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if SECRET.encode() in body:
                leaks.append(f"{method.upper()} {route.url} ({route.name}) shows the data: {response.status_code}")
            elif route.has_object and not refused(route.name, response):
                where = response.get("Location", "")
                leaks.append(f"{method.upper()} {route.url} ({route.name}) answered {response.status_code} {where}")
    assert tried > 100
    assert not leaks, "\n".join(leaks)


def refused(name: str, response: Any) -> bool:
    if response.status_code in REFUSED:
        return True
    # The admin sends users who are not staff to its own login page.
    redirect = response.get("Location", "") if response.status_code == 302 else ""
    return name.startswith("admin:") and redirect.startswith("/admin/login/")


def test_it_shows_the_outsider_empty_lists(secret_objects: dict[str, Any], outsider_client: Client) -> None:
    assert outsider_client.get("/api/reports/").json() == []
    assert outsider_client.get("/api/tpa/tpas").status_code == 403
    page = outsider_client.get("/reports/")
    assert page.status_code == 200 and SECRET not in page.content.decode()


# Known open on main, each with the issue that tracks it. Strict: the day the fix lands the
# case passes, fails as XPASS, and the entry goes (the URL test below takes it up again too).
KNOWN_OPEN: dict[str, tuple[str, str]] = {}


def operation_cases() -> list[Any]:
    cases = []
    for operation in api_operations():
        known = KNOWN_OPEN.get(str(operation))
        marks = [pytest.mark.xfail(strict=True, reason=known[1])] if known else []
        cases.append(pytest.param(operation, id=str(operation), marks=marks))
    return cases


@pytest.mark.parametrize("operation", operation_cases())
def test_it_refuses_every_api_operation_to_the_outsider_or_shows_nothing_of_others(
    operation: Any, secret_objects: dict[str, Any], outsider_client: Client
) -> None:
    """Every operation of /api/openapi.json, from the document itself: one that names an object
    is refused; one that lists shows the outsider nothing that belongs to the owner."""
    url = fill(operation, secret_objects)
    response = getattr(outsider_client, operation.method)(url, content_type="application/json")
    body = response.content.decode(errors="replace")
    assert SECRET not in body, f"{operation} shows the owner's data to the outsider: {response.status_code}"
    if operation.has_object:
        assert response.status_code in REFUSED, f"{operation} answered {response.status_code}: {body[:200]}"


def test_it_enumerates_the_whole_openapi_document() -> None:
    """The operations above are the served document's, not a list kept by hand."""
    served = Client().get("/api/openapi.json")
    if served.status_code != 200:  # the document itself may need a sign-in
        pytest.skip(f"/api/openapi.json answered {served.status_code}")
    document = {(method, path) for path, ops in served.json()["paths"].items() for method in ops}
    assert {(op.method, op.path) for op in api_operations()} == document
