"""Helpers for tests that watch the Snowflake emulator from outside, as an operator would."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from django.conf import settings

# Only bounds how long a broken build takes to fail; never the measure of a test.
GENEROUS = 30.0


def emulator_url(path: str) -> str:
    config = settings.FANOUT_SOURCES["snowflake"]
    return f"http://{config['host']}:{config['port']}{path}"


def emulator_post(path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        emulator_url(path), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def running_on_emulator() -> list[dict[str, Any]]:
    with urllib.request.urlopen(emulator_url("/emulator/queries"), timeout=10) as response:
        return list(json.loads(response.read())["queries"])


def running_like(text: str) -> list[dict[str, Any]]:
    return [q for q in running_on_emulator() if text in q["sql_text"] and not q["cancelled"]]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)
