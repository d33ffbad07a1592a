"""Real services that a fault test starts, stops mid-test and starts again.

Each is a private process on a free port (never the session's shared Redis or emulator),
so stopping it affects only the test that owns it. The code under test is pointed at it
through settings and a fresh source (`get_source.cache_clear()`).
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from devtools.services import free_port, wait_for_port
from project.sources import get_source
from tpa import demo
from tpa.models import FieldMapping, Tpa

BASE_DIR = Path(__file__).resolve().parents[2]


class Service:
    """One subprocess on a fixed port, so clients configured once find it again after a restart."""

    name = "service"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.directory / f"{self.name}.log", "ab")  # noqa: SIM115 - kept for the process's life
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True, cwd=BASE_DIR)
        log.close()
        wait_for_port(self.port, self.process, self.name, seconds=60)

    def stop(self) -> None:
        """Stop it as an outage would: the port refuses connections afterwards."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Redis(Service):
    name = "redis"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--loglevel",
            "warning",
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Emulator(Service):
    """The Snowflake emulator with its own data folder, which outlives restarts (stage and tables)."""

    name = "emulator"

    def command(self) -> list[str]:
        data = self.directory / "snowflake"
        data.mkdir(exist_ok=True)
        return [
            sys.executable,
            "-m",
            "devtools.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ]

    def source_config(self, base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        return {
            **base,
            "host": "127.0.0.1",
            "port": self.port,
            "protocol": "http",
            "account": "fakesnow",
            "user": "fake",
            "password": "snow",
            **overrides,
        }


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    if not shutil.which("redis-server"):
        pytest.skip("needs Debian's redis-server")
    server = Redis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, django_db_blocker) -> Iterator[Emulator]:
    """A private emulator with the pipeline's objects deployed (once per session; tests that
    stop it start it again before they end)."""
    server = Emulator(tmp_path_factory.mktemp("emulator"))
    server.start()
    with use_emulator(server), django_db_blocker.unblock():
        call_command("snowflake_deploy", verbosity=0)
    yield server
    server.stop()


class use_emulator:  # noqa: N801 - used as a context manager, like override_settings
    """Point the "snowflake" source at `emulator` (a fresh source: no pooled sessions)."""

    def __init__(self, server: Emulator, **overrides: Any) -> None:
        from django.conf import settings

        self.sources = copy.deepcopy(settings.FANOUT_SOURCES)
        self.sources["snowflake"] = server.source_config(self.sources["snowflake"], **overrides)

    def __enter__(self) -> None:
        from django.test import override_settings

        self.override = override_settings(FANOUT_SOURCES=self.sources)
        self.override.enable()
        reset_source()

    def __exit__(self, *exc: object) -> None:
        reset_source()
        self.override.disable()
        get_source.cache_clear()


def reset_source() -> None:
    """Close the snowflake source's pooled sessions and forget it, as a new process starts
    without any. Call it while its server is up: closing a session tells the server."""
    source = get_source("snowflake")
    try:
        asyncio.run(source.close())
    finally:
        get_source.cache_clear()


@pytest.fixture
def on_emulator(emulator: Emulator) -> Iterator[Emulator]:
    """The private emulator, running, with the snowflake source pointed at it for this test."""
    if not emulator.running:
        emulator.start()
    with use_emulator(emulator):
        yield emulator
        if not emulator.running:
            emulator.start()


@pytest.fixture
def make_tpa(db: None) -> Callable[..., Tpa]:
    """A TPA with a fresh code and ACME's mappings (tests.tpa's, without deploying on the
    session's shared emulator: fault tests use their own)."""

    def make(**kwargs: object) -> Tpa:
        schema = demo.claims_schema()
        code = str(kwargs.pop("code", f"T{uuid.uuid4().hex[:8].upper()}"))
        tpa = Tpa.objects.create(code=code, name=f"{code} Benefits", target_schema=schema, **kwargs)
        FieldMapping.objects.bulk_create(
            FieldMapping(tpa=tpa, target_schema=schema, source_column=s, target_column=t, transform=tr, argument=a)
            for s, t, tr, a in demo.DEMO_TPAS[0].mappings
        )
        return tpa

    return make
