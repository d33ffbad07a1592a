from __future__ import annotations

from django.contrib.auth.models import Permission
from django.test import Client

from tests.tpa.conftest import claims_file
from tpa.models import IngestionFile, PipelineRun


def test_it_shows_the_outsider_nothing(make_tpa, outsider_client) -> None:
    tpa = make_tpa()
    assert outsider_client.get("/tpa/").status_code == 403
    assert outsider_client.get("/tpa/queue/").status_code == 403
    assert outsider_client.get(f"/tpa/{tpa.code}/").status_code == 404
    assert outsider_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file()}).status_code == 404
    assert outsider_client.post(f"/tpa/{tpa.code}/runs/").status_code == 404
    assert outsider_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 404
    assert outsider_client.get("/api/tpa/tpas").status_code == 403
    assert outsider_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()}).status_code == 404
    assert outsider_client.post(f"/api/tpa/tpas/{tpa.code}/runs").status_code == 404
    assert not IngestionFile.objects.exists() and not PipelineRun.objects.exists()


def test_it_lets_a_viewer_look_but_not_operate(make_tpa, member, member_client) -> None:
    tpa = make_tpa()
    member.user_permissions.add(Permission.objects.get(codename="view_tpa"))
    assert member_client.get(f"/tpa/{tpa.code}/").status_code == 200
    assert member_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file()}).status_code == 403
    assert member_client.post(f"/tpa/{tpa.code}/runs/").status_code == 403
    assert member_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 403
    assert member_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()}).status_code == 403
    assert not IngestionFile.objects.exists()


def test_it_lets_an_operator_upload_but_not_edit_mappings(make_tpa, member, member_client) -> None:
    tpa = make_tpa()
    member.user_permissions.add(Permission.objects.get(codename="operate_tpa"))
    assert member_client.post(f"/api/tpa/tpas/{tpa.code}/files", {"file": claims_file()}).status_code == 201
    assert member_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 403


def test_it_hides_a_run_behind_another_tpas_url(make_tpa, owner_client) -> None:
    one, other = make_tpa(), make_tpa()
    owner_client.post(f"/api/tpa/tpas/{one.code}/files", {"file": claims_file()})
    run_id = owner_client.post(f"/api/tpa/tpas/{one.code}/runs").json()["id"]
    assert owner_client.get(f"/tpa/{other.code}/runs/{run_id}/").status_code == 404
    assert owner_client.get(f"/api/tpa/tpas/{other.code}/runs/{run_id}").status_code == 404


def test_it_answers_401_to_an_anonymous_api_client(make_tpa) -> None:
    assert Client().get("/api/tpa/tpas").status_code == 401
