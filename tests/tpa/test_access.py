from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Permission, User
from django.test import Client

from tests.tpa.conftest import claims_file
from tpa.models import IngestionFile, PipelineRun, Tpa


def test_it_shows_the_outsider_nothing(make_tpa, outsider_client) -> None:
    tpa = make_tpa()
    assert outsider_client.get("/tpa/").status_code == 403
    assert outsider_client.get("/tpa/queue/").status_code == 403
    assert outsider_client.get(f"/tpa/{tpa.code}/").status_code == 404
    assert outsider_client.post(f"/tpa/{tpa.code}/upload", {"file": claims_file()}).status_code == 404
    assert outsider_client.post(f"/tpa/{tpa.code}/runs/").status_code == 404
    assert outsider_client.get(f"/tpa/{tpa.code}/mappings/").status_code == 404
    assert outsider_client.get("/api/tpa/tpas").status_code == 403
    assert outsider_client.get("/api/tpa/master-data").status_code == 403
    assert outsider_client.get(f"/api/tpa/master-data?tpa={tpa.code}").status_code == 404
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


def test_it_serves_master_data_only_of_the_tpas_a_user_may_see(
    make_tpa, member, member_client, outsider_client
) -> None:
    tpa = make_tpa()
    assert outsider_client.get("/api/tpa/master-data").status_code == 403
    assert outsider_client.get(f"/api/tpa/master-data?tpa={tpa.code}").status_code == 404
    assert outsider_client.get("/api/tpa/master-data?tpa=NOSUCH").status_code == 404  # the same answer

    member.user_permissions.add(Permission.objects.get(codename="view_tpa"))
    every = member_client.get("/api/tpa/master-data").json()["data"]
    assert tpa.code in every and every[tpa.code]["table_name"] == "CLAIMS"
    one = member_client.get(f"/api/tpa/master-data?tpa={tpa.code}").json()["data"]
    assert list(one) == [tpa.code]
    assert [m["target_column"] for m in one[tpa.code]["mappings"]][:2] == ["CLAIM_ID", "MEMBER_ID"]


def test_it_agrees_with_itself_on_who_sees_which_tpa(make_tpa, owner, member, outsider) -> None:
    tpa = make_tpa()
    assert list(Tpa.objects.visible_to(outsider)) == []
    assert list(Tpa.objects.visible_to(member)) == []
    member.user_permissions.add(Permission.objects.get(codename="operate_tpa"))
    assert list(Tpa.objects.visible_to(User.objects.get(pk=member.pk))) == [tpa]  # a fresh user: no perm cache
    assert list(Tpa.objects.visible_to(owner)) == [tpa]
    assert list(Tpa.objects.visible_to(AnonymousUser())) == []
