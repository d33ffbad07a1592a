from __future__ import annotations

import asyncio
import io
import threading

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from project.sources import SourceTimeout
from tests.tpa.conftest import claims_file, staged
from tpa import snowflake
from tpa.models import FileStatus, IngestionFile


def test_it_stages_an_upload_and_lists_it_on_the_tpa_page(make_tpa, owner, owner_client) -> None:
    tpa = make_tpa()
    response = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=7)}, follow=True)
    today = timezone.localdate()
    path = f"{tpa.code.lower()}/{today:%Y/%m/%d}/claims.csv"
    assert f"Staged {path}: 7 rows" in response.content.decode()
    file = IngestionFile.objects.get(tpa=tpa)
    assert (file.stage_path, file.status, file.row_count, file.uploaded_by) == (path, FileStatus.UPLOADED, 7, owner)
    assert len(file.sha256) == 64
    assert staged(tpa.code) == [path]
    page = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    stage_listing = page[page.index('id="staged"') :]
    assert f"<td>{path}</td>" in stage_listing[: stage_listing.index("</table>")]


def test_it_refuses_a_header_that_does_not_match_the_mappings_before_staging(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    content = b"claim_id,member,service_date,cpt,icd10,billed,paid,status,notes\nA1,M1,2026-01-02,1,2,3,4,PAID,x\n"
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": _file(content, "bad.csv")})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "Missing columns: member_id." in detail
    assert "Unknown columns: member, notes." in detail
    assert not IngestionFile.objects.filter(tpa=tpa).exists()
    assert staged(tpa.code) == []


def test_it_refuses_a_duplicate_file(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    first = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(name="jan.csv")})
    assert first.status_code == 201
    again = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(name="jan-copy.csv")})
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert detail.startswith("This file has the same content as jan.csv (") and "waits for a run" in detail
    assert IngestionFile.objects.filter(tpa=tpa).count() == 1
    assert len(staged(tpa.code)) == 1


def test_it_keeps_a_hostile_name_inside_the_tpas_stage_path(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    name = "x' @BRONZE.TPA_FILES; REMOVE @BRONZE.TPA_FILES; --.csv"
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(name=name)})
    assert response.status_code == 201, response.content
    path = response.json()["stage_path"]
    assert path.startswith(f"{tpa.code.lower()}/") and path.endswith("/x_BRONZE_TPA_FILES_REMOVE_BRONZE_TPA_FILES.csv")
    assert staged(tpa.code) == [path]
    refused = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(seed=2, name="..acme.csv")})
    assert refused.status_code == 400
    assert "'..'" in refused.json()["detail"]


@override_settings(TPA_UPLOAD_MAX_BYTES=200)
def test_it_refuses_a_file_over_the_size_limit(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=20)})
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["detail"]
    assert staged(tpa.code) == []


def test_it_records_nothing_when_the_put_fails(make_tpa, owner_client, monkeypatch) -> None:
    tpa = make_tpa()
    # A stage that does not exist: the PUT fails on the server, as after a dropped stage.
    monkeypatch.setattr("tpa.snowflake.STAGE", "BRONZE.NO_SUCH_STAGE")
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})
    assert response.status_code == 502
    assert response.json()["detail"].startswith("The file could not be staged, nothing was recorded:")
    assert not IngestionFile.objects.filter(tpa=tpa).exists()


def _file(content: bytes, name: str) -> io.BytesIO:
    data = io.BytesIO(content)
    data.name = name
    return data


def upload_together(owner, tpa, files: list[io.BytesIO]) -> list[int]:
    """Post the files to the API at the same moment, each from its own client and thread."""
    barrier = threading.Barrier(len(files))
    statuses: list[int] = []

    def post(file: io.BytesIO) -> None:
        client = Client()
        client.force_login(owner)
        barrier.wait()
        try:
            statuses.append(client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": file}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(file,)) for file in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
def test_it_keeps_both_of_two_uploads_of_one_name_at_the_same_moment(make_tpa, owner) -> None:
    tpa = make_tpa()
    assert upload_together(owner, tpa, [claims_file(seed=1), claims_file(seed=2)]) == [201, 201]
    paths = sorted(IngestionFile.objects.filter(tpa=tpa).values_list("stage_path", flat=True))
    assert len(paths) == 2 and paths[0].endswith("/claims.csv") != paths[1].endswith("/claims.csv")
    assert sorted(staged(tpa.code)) == paths  # every recorded file is on the stage
    assert set(IngestionFile.objects.filter(tpa=tpa).values_list("status", flat=True)) == {FileStatus.UPLOADED}


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_winner_of_two_uploads_of_one_content_at_the_same_moment(make_tpa, owner) -> None:
    tpa = make_tpa()
    assert upload_together(owner, tpa, [claims_file(name="a.csv"), claims_file(name="b.csv")]) == [201, 409]
    recorded = IngestionFile.objects.get(tpa=tpa)
    assert staged(tpa.code) == [recorded.stage_path]  # the loser removed nothing


def test_it_records_a_file_whose_put_timed_out_on_the_client_but_landed(make_tpa, owner_client, monkeypatch) -> None:
    tpa = make_tpa()
    real_put = snowflake.put

    async def put_then_time_out(*args: object) -> None:
        await real_put(*args)  # type: ignore[arg-type]
        raise SourceTimeout("snowflake", 120)  # the answer never reached the client

    monkeypatch.setattr("tpa.snowflake.put", put_then_time_out)
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})
    assert response.status_code == 201, response.content
    assert staged(tpa.code) == [response.json()["stage_path"]]
    assert IngestionFile.objects.get(tpa=tpa).status == FileStatus.UPLOADED


def test_it_removes_a_file_whose_put_timed_out_and_did_not_land(make_tpa, owner_client, monkeypatch) -> None:
    tpa = make_tpa()

    async def time_out(*args: object) -> None:
        raise SourceTimeout("snowflake", 120)

    monkeypatch.setattr("tpa.snowflake.put", time_out)
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()})
    assert response.status_code == 502
    assert "nothing was recorded" in response.json()["detail"]
    assert not IngestionFile.objects.filter(tpa=tpa).exists() and staged(tpa.code) == []


def test_it_uploads_over_a_staged_file_that_has_no_record(make_tpa, owner_client, tmp_path) -> None:
    tpa = make_tpa()
    # What an earlier attempt left when its record was never written (its process died).
    directory = f"{tpa.code.lower()}/{timezone.localdate():%Y/%m/%d}"
    leftover = tmp_path / "claims.csv"
    leftover.write_bytes(b"TPA_CODE,SOURCE_FILE,LINE_NO\n")
    asyncio.run(snowflake.put(leftover, directory, "claims.csv"))

    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file(rows=5)})
    assert response.status_code == 201, response.content
    assert response.json()["stage_path"] == f"{directory}/claims.csv"
    assert [f.size for f in asyncio.run(snowflake.list_stage(f"{directory}/claims.csv"))] != [leftover.stat().st_size]


def test_it_refuses_values_that_do_not_fit_the_mappings_with_line_column_and_reason(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    content = (
        b"claim_id,member_id,service_date,cpt,icd10,billed,paid,status\n"
        b'A1,M1,2026-01-02,99213,J06,"1,234.50",100,PAID\n'
        b"A2,M2,02/01/2026,99213,J06,12.00,10,PAID\n"
        b"A3,,2026-01-03,99213,J06,twelve,10,PAID\n"
        b"A4,M4,2026-01-04,99213,J06,99999999999999999,,PAID\n"
    )
    response = owner_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": _file(content, "jan.csv")})
    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith("4 values do not fit the mappings; nothing was staged.")
    assert body["errors"] == [
        {"line": 3, "column": "service_date", "value": "02/01/2026", "reason": "not a date in the format YYYY-MM-DD"},
        {"line": 4, "column": "member_id", "value": "", "reason": "MEMBER_ID is required"},
        {"line": 4, "column": "billed", "value": "twelve", "reason": "not a number"},
        {
            "line": 5,
            "column": "billed",
            "value": "99999999999999999",
            "reason": "too large (at most 16 digits before the decimal point)",
        },
    ]
    assert not IngestionFile.objects.filter(tpa=tpa).exists() and staged(tpa.code) == []


def test_it_shows_the_first_ten_problems_on_the_page_and_counts_the_rest(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    rows = b"".join(b"A%d,M1,soon,99213,J06,1.00,1.00,PAID\n" % n for n in range(25))
    content = b"claim_id,member_id,service_date,cpt,icd10,billed,paid,status\n" + rows
    page = owner_client.post(f"/tpa/{tpa.code}/upload", {"file": _file(content, "jan.csv")}, follow=True)
    text = page.content.decode()
    assert "25 values do not fit the mappings; nothing was staged (15 more not shown)." in text
    assert "line 11, column service_date" in text and "line 12," not in text
    assert not IngestionFile.objects.filter(tpa=tpa).exists()


def test_it_pages_the_files_of_a_tpa_with_their_total(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    for n in range(27):
        IngestionFile.objects.create(
            tpa=tpa,
            original_name=f"f{n}.csv",
            stage_path=f"{tpa.code.lower()}/2026/01/01/f{n:02d}.csv",
            size=1,
            sha256=f"{n:064d}",
            row_count=1,
        )
    first = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    assert "27 files · page 1 of 2" in first and "<td>f26.csv</td>" in first and "<td>f1.csv</td>" not in first
    second = owner_client.get(f"/tpa/{tpa.code}/?files=2").content.decode()
    assert "page 2 of 2" in second and "<td>f1.csv</td>" in second and "<td>f26.csv</td>" not in second
    assert "page 2 of 2" in owner_client.get(f"/tpa/{tpa.code}/?files=99").content.decode()  # past the end
    assert "27 files" in owner_client.get("/tpa/queue/").content.decode()

    api = owner_client.get(f"/api/tpa/tpas/{tpa.code}/files?limit=5&offset=25")
    assert api["X-Total-Count"] == "27"
    assert [f["original_name"] for f in api.json()] == ["f1.csv", "f0.csv"]


def test_it_says_why_the_run_button_is_disabled(make_tpa, owner_client) -> None:
    tpa = make_tpa()
    page = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    assert "disabled" in page[page.index("Run the pipeline") - 80 : page.index("Run the pipeline")]
    assert "No file is waiting: upload one first." in page
    owner_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file(rows=1)})
    page = owner_client.get(f"/tpa/{tpa.code}/").content.decode()
    assert "Run the pipeline on 1 waiting file</button>" in page and "No file is waiting" not in page
