from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_shows_every_api_operation_in_the_docs(signed_in_page, server_url):
    page = signed_in_page
    page.goto(f"{server_url}/api/docs")
    # Swagger UI draws one block per operation once it has parsed the document.
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    assert page.locator(".opblock").count() >= 10
    expect(page.locator(".opblock-summary-path", has_text="/api/reports/{slug}/run")).to_be_visible()
    assert page.locator(".errors-wrapper").count() == 0, page.locator(".errors-wrapper").inner_text()
    assert not [error for error in page.errors if "favicon" not in error]
