"""The API's OpenAPI document is valid: Swagger UI and client generators can read it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicated, f"duplicate keys {duplicated} in one object"
    return dict(pairs)


def test_it_declares_each_answer_of_an_operation_once(member_client: Client) -> None:
    # A Python dict keeps the last of two equal keys; YAML and Swagger UI refuse the document.
    text = member_client.get("/api/openapi.json").content.decode()
    json.loads(text, object_pairs_hook=no_duplicate_keys)


def test_it_passes_the_openapi_specification_validator(member_client: Client) -> None:
    document = member_client.get("/api/openapi.json").json()
    validate(document)
    assert len(document["paths"]) >= 10  # every app's router is in it


def test_it_declares_the_common_error_answers_on_every_operation(member_client: Client) -> None:
    document = member_client.get("/api/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
