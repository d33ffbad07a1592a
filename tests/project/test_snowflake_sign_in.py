"""Signing in to Snowflake: key pair, OAuth, programmatic access token, password; and the
settings that refuse a partial or contradictory configuration at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from project.sources import SourceUnavailable
from project.sources.snowflake import SnowflakeSource
from tests.project.snowflake_helpers import emulator_post


def make_source(**overrides: object) -> SnowflakeSource:
    return SnowflakeSource("snowflake", {**settings.FANOUT_SOURCES["snowflake"], **overrides})


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_body(key: rsa.RSAPrivateKey) -> str:
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return "".join(line for line in pem.splitlines() if "-----" not in line)


async def admin(sql: str) -> list[tuple[object, ...]]:
    # Users and their keys are managed by ACCOUNTADMIN (or USERADMIN), not the pipeline's SYSADMIN.
    source = make_source(role="ACCOUNTADMIN")
    try:
        return (await source.execute(sql, read_only=False)).rows
    finally:
        await source.close()


@pytest.fixture
async def key_user() -> tuple[str, rsa.RSAPrivateKey]:
    """A service user whose registered public key is that of a fresh key pair."""
    name = f"SVC_{uuid.uuid4().hex[:8].upper()}"
    key = new_key()
    await admin(f"CREATE USER {name} RSA_PUBLIC_KEY = '{public_body(key)}' DEFAULT_ROLE = PUBLIC")
    await admin(f"GRANT ROLE SYSADMIN TO USER {name}")
    return name, key


async def test_it_signs_in_with_a_key_pair(key_user: tuple[str, rsa.RSAPrivateKey]) -> None:
    name, key = key_user
    source = make_source(user=name, authenticator="key_pair", private_key=der(key), password="")
    assert (await source.execute("SELECT 1 AS n")).rows == [(1,)]
    await source.close()


async def test_it_is_refused_with_a_key_that_is_not_the_users(key_user: tuple[str, rsa.RSAPrivateKey]) -> None:
    name, _ = key_user
    source = make_source(user=name, authenticator="key_pair", private_key=der(new_key()), password="")
    with pytest.raises(SourceUnavailable, match="JWT token is invalid"):
        await source.execute("SELECT 1 AS n")


async def test_it_signs_in_with_an_oauth_token() -> None:
    token = (await asyncio.to_thread(emulator_post, "/emulator/oauth-tokens", {"user": "fake"}))["access_token"]
    source = make_source(authenticator="oauth", token=token, password="")
    assert (await source.execute("SELECT 1 AS n")).rows == [(1,)]
    await source.close()
    forged = make_source(authenticator="oauth", token="oauth-forged", password="")
    with pytest.raises(SourceUnavailable, match="Invalid OAuth access token"):
        await forged.execute("SELECT 1 AS n")


async def test_it_signs_in_with_a_programmatic_access_token() -> None:
    ((_, secret),) = await admin(f"ALTER USER fake ADD PROGRAMMATIC ACCESS TOKEN t_{uuid.uuid4().hex[:6]}")
    source = make_source(authenticator="programmatic_access_token", token=secret, password="")
    assert (await source.execute("SELECT 1 AS n")).rows == [(1,)]
    await source.close()


async def test_it_is_refused_with_a_wrong_password() -> None:
    source = make_source(authenticator="password", password="not-the-password")
    with pytest.raises(SourceUnavailable, match="Incorrect username or password"):
        await source.execute("SELECT 1 AS n")


# -- settings -----------------------------------------------------------------------------------

SNOWFLAKE_VARIABLES = [name for name in os.environ if name.startswith("SNOWFLAKE_")]


def load(debug: bool = True, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in SNOWFLAKE_VARIABLES}
    env.update({"DJANGO_DEBUG": "1" if debug else "0", "DJANGO_SECRET_KEY": "x" * 50, **variables})
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "c = settings.FANOUT_SOURCES['snowflake']; print(c['authenticator'], bool(c.get('password')), "
            "len(c.get('private_key') or b''), c['report_role'])",
        ],
        env=env,
        capture_output=True,
        text=True,
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def write_key(tmp_path: Path, passphrase: bytes | None) -> Path:
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(new_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


def test_it_uses_a_password_whether_or_not_a_host_is_set() -> None:
    result = load(SNOWFLAKE_ACCOUNT="acme", SNOWFLAKE_USER="fanout", SNOWFLAKE_PASSWORD="secret")
    assert result.stdout.split()[:2] == ["password", "True"], result.stderr


def test_it_reads_an_encrypted_key_with_its_passphrase_from_a_file(tmp_path: Path) -> None:
    key = write_key(tmp_path, b"open sesame")
    (tmp_path / "passphrase").write_text("open sesame\n")
    result = load(
        SNOWFLAKE_ACCOUNT="acme",
        SNOWFLAKE_USER="fanout",
        SNOWFLAKE_PRIVATE_KEY_FILE=str(key),
        SNOWFLAKE_PRIVATE_KEY_PASSPHRASE_FILE=str(tmp_path / "passphrase"),
    )
    assert result.stdout.split()[0] == "key_pair" and int(result.stdout.split()[2]) > 1000, result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"SNOWFLAKE_PASSWORD": "secret", "SNOWFLAKE_PRIVATE_KEY_FILE": "/k.p8"},
            "Snowflake sign-in: set only one of SNOWFLAKE_PRIVATE_KEY_FILE, SNOWFLAKE_PASSWORD",
        ),
        (
            {"SNOWFLAKE_OAUTH_TOKEN": "t", "SNOWFLAKE_PROGRAMMATIC_ACCESS_TOKEN": "p"},
            "set only one of SNOWFLAKE_OAUTH_TOKEN, SNOWFLAKE_PROGRAMMATIC_ACCESS_TOKEN",
        ),
        (
            {"SNOWFLAKE_PASSWORD": "secret", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "p"},
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is set without SNOWFLAKE_PRIVATE_KEY_FILE",
        ),
        ({"SNOWFLAKE_PRIVATE_KEY_FILE": "/no/such/key.p8"}, "SNOWFLAKE_PRIVATE_KEY_FILE='/no/such/key.p8' cannot"),
    ],
)
def test_it_refuses_a_contradictory_sign_in_in_one_line(variables: dict[str, Any], message: str) -> None:
    assert message in refusal(load(SNOWFLAKE_ACCOUNT="acme", SNOWFLAKE_USER="fanout", **variables))


def test_it_refuses_an_encrypted_key_without_its_passphrase_or_with_a_wrong_one(tmp_path: Path) -> None:
    key = str(write_key(tmp_path, b"open sesame"))
    base: dict[str, Any] = {"SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "fanout", "SNOWFLAKE_PRIVATE_KEY_FILE": key}
    assert "is encrypted: set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE" in refusal(load(**base))
    wrong = load(**base, SNOWFLAKE_PRIVATE_KEY_PASSPHRASE="guess")
    assert "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is wrong" in refusal(wrong)


def test_it_refuses_to_start_in_production_without_a_sign_in_or_a_report_role() -> None:
    assert "Snowflake sign-in is not configured" in refusal(load(debug=False))
    no_user = load(debug=False, SNOWFLAKE_ACCOUNT="acme", SNOWFLAKE_OAUTH_TOKEN="t", SNOWFLAKE_PASSWORD="")
    assert "SNOWFLAKE_REPORT_ROLE" in refusal(no_user)
    no_account = load(debug=False, SNOWFLAKE_USER="fanout", SNOWFLAKE_PASSWORD="secret")
    assert "SNOWFLAKE_PASSWORD is set without SNOWFLAKE_ACCOUNT" in refusal(no_account)
    complete = load(
        debug=False,
        # production also wants report queries on Postgres under a role of their own
        REPORTS_DATABASE_URL="postgresql://fanout_reports@127.0.0.1:5432/reports",
        SNOWFLAKE_ACCOUNT="acme",
        SNOWFLAKE_USER="fanout",
        SNOWFLAKE_PASSWORD="secret",
        SNOWFLAKE_REPORT_ROLE="FANOUT_REPORTS",
    )
    assert complete.stdout.split()[-1] == "FANOUT_REPORTS", complete.stderr
