from __future__ import annotations

import io

from django.test import override_settings
from django.utils import timezone

from tests.tpa.conftest import claims_file, staged
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
