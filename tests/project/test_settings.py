from __future__ import annotations

import os
import subprocess
import sys


def load_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **overrides}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        env=env,
        capture_output=True,
        text=True,
    )


def test_it_names_the_variable_that_is_wrong() -> None:
    result = load_settings(SNOWFLAKE_POOL_SIZE="0")
    assert result.returncode != 0
    assert "SNOWFLAKE_POOL_SIZE must be a positive whole number" in result.stderr


def test_it_refuses_to_start_in_production_without_a_secret_key() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Set the DJANGO_SECRET_KEY environment variable" in result.stderr


def test_it_reads_a_secret_from_a_file(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
        ],
        env={**os.environ, "DJANGO_SECRET_KEY_FILE": str(secret)},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "from-a-file"


def test_it_refuses_a_database_url_that_is_not_postgres() -> None:
    result = load_settings(DATABASE_URL="sqlite:///db.sqlite3")
    assert "DATABASE_URL must be a postgresql:// URL" in result.stderr


def production(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_DEBUG", "REPORTS_DATABASE_URL")}
    env.update(
        DJANGO_SECRET_KEY="s" * 50,
        DATABASE_URL="postgresql://fanout:pw@db.internal/fanout",
        # production also requires Snowflake report queries under a read-only role
        SNOWFLAKE_REPORT_ROLE="FANOUT_REPORTS",
        **overrides,
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_it_refuses_to_start_in_production_when_reports_would_use_the_apps_credentials() -> None:
    missing = production()
    assert missing.returncode != 0
    assert "Set REPORTS_DATABASE_URL to a read-only role for report queries" in missing.stderr
    same = production(REPORTS_DATABASE_URL="postgresql://fanout:pw@db.internal/fanout")
    assert same.returncode != 0
    assert "REPORTS_DATABASE_URL must name a read-only role of its own, not DATABASE_URL's user 'fanout'" in same.stderr
    own = production(REPORTS_DATABASE_URL="postgresql://fanout_reports:pw@db.internal/fanout")
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip() == "started"
