"""Uploads built to break the pipeline: each is refused with a clear message before anything
is recorded or staged, and what was there before is untouched."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from django.test import Client, override_settings

from tests.tpa.conftest import ACME, claims_file, staged
from tpa import demo
from tpa.models import IngestionFile, Tpa

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ",".join(source for source, *_ in ACME.mappings if source).encode()
GOOD = demo.claims_csv(ACME, 3, seed=9)


def named(content: bytes, name: str = "claims.csv") -> io.BytesIO:
    data = io.BytesIO(content)
    data.name = name
    return data


@pytest.fixture
def tpa_with_a_file(make_tpa, owner_client: Client, tmp_path: Path, monkeypatch) -> Tpa:
    """A TPA holding one good upload: the data that hostile uploads must leave alone. Temporary
    files go to the test's own folder, so leftovers can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tpa = make_tpa()
    assert owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=4)}).status_code == 201
    return tpa


def one_line_of_50_mb(directory: Path) -> io.BufferedReader:
    """The header, then one line of 50 MB (no separators; under the 50 MiB limit), written to disk."""
    path = directory / "huge.csv"
    with open(path, "wb") as out:
        out.write(HEADER + b"\n")
        for _ in range(50):
            out.write(b"A" * 1_000_000)
        out.write(b"\n")
    return open(path, "rb")  # noqa: SIM115 - the test client reads and closes it


CASES = {
    "empty": (lambda _: named(b""), 400, "The file is empty."),
    "binary": (lambda _: named(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64), 400, "The file is not UTF-8 text."),
    "utf-16": (lambda _: named(GOOD.decode().encode("utf-16")), 400, "The file is not UTF-8 text."),
    "latin-1 row": (
        lambda _: named(GOOD + b"ACM-9,M-1,2026-01-05,99213,J10,\xe9t\xe9,1,PAID\n"),
        400,
        "The file is not UTF-8 text.",
    ),
    "one line of 50 MB": (one_line_of_50_mb, 400, "The file is not valid CSV: field larger than field limit"),
    "a header only": (lambda _: named(HEADER + b"\n"), 400, "The file has a header but no rows."),
    "ragged rows": (lambda _: named(GOOD + b"only,three,fields\n"), 400, "fields; the header has"),
    "not a csv name": (lambda _: named(GOOD, "claims.exe"), 400, "Only .csv files can be uploaded."),
}


@pytest.mark.parametrize("case", list(CASES))
def test_it_refuses_a_hostile_upload_and_keeps_what_was_there(
    case: str, tpa_with_a_file: Tpa, owner_client: Client, tmp_path: Path
) -> None:
    tpa = tpa_with_a_file
    before = list(IngestionFile.objects.filter(tpa=tpa).values_list("stage_path", "sha256", "status"))
    stage_before = staged(tpa.code)
    build, status, message = CASES[case]

    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": build(tmp_path)})

    assert response.status_code == status, response.content[:300]
    assert message in response.json()["detail"]
    assert list(IngestionFile.objects.filter(tpa=tpa).values_list("stage_path", "sha256", "status")) == before
    assert staged(tpa.code) == stage_before
    assert not list(tmp_path.glob("tpa-*")), "the upload's temporary copies were left behind"


@override_settings(TPA_UPLOAD_MAX_BYTES=64 * 1024)
def test_it_refuses_a_file_over_the_limit_on_the_page_with_the_limit_in_the_message(
    tpa_with_a_file: Tpa, owner_client: Client, tmp_path: Path
) -> None:
    tpa = tpa_with_a_file
    big = named(HEADER + b"\n" + b"x" * (128 * 1024))
    page = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": big}, follow=True)
    assert page.status_code == 200
    assert "The file is larger than the limit of 0.0625 MiB." in page.content.decode()
    assert IngestionFile.objects.filter(tpa=tpa).count() == 1
    assert len(staged(tpa.code)) == 1
    assert not list(tmp_path.glob("tpa-*"))
