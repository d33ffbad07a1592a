"""Commands in a second terminal: against the running demo, or a one-line reason why not."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from devtools import services

BASE_DIR = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_it_names_a_missing_setting_in_one_line_without_a_traceback() -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DJANGO_DEBUG"}}
    done = manage("check", env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("manage.py: Set the DJANGO_SECRET_KEY environment variable")
    env["DJANGO_DEBUG"] = "1"
    done = manage("cache_status", env=env)
    assert done.stderr.startswith("manage.py: Set DATABASE_URL")
    assert "make manage ARGS='cache_status'" in done.stderr


def test_it_tells_a_second_terminal_to_start_the_demo_first(tmp_path: Path) -> None:
    assert services.manage_demo(tmp_path, ["cache_status"]) == 2


def test_it_gives_a_second_terminal_the_demos_services_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DATABASE_URL": os.environ["DATABASE_URL"], "DJANGO_DEBUG": "1"}
    monkeypatch.delenv("DATABASE_URL")  # the command gets it from the demo's file only
    with ExitStack() as stack:
        services.write_env(tmp_path / services.DEMO_ENV, env, stack)
        assert services.manage_demo(tmp_path, ["check", "--database", "default"]) == 0
    # Stopped: the file goes, so no command is pointed at services that are gone.
    assert not (tmp_path / services.DEMO_ENV).exists()
