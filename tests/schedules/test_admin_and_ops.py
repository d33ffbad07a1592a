"""Staff see and run every report's schedules in the admin, and the run history in /ops/."""

from __future__ import annotations

import datetime

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from devtools.services import free_port
from schedules.models import Delivery, Run
from schedules.runs import execute
from schedules.scheduler import claim_due
from tests.conftest import make_user
from tests.schedules.conftest import due_now, make_claims_report, make_schedule, make_subscription, run_due
from tests.tpa.conftest import work

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_staff_list_schedules_and_run_one_now_from_the_admin(owner, admin_client):
    schedule = make_schedule(make_claims_report(owner))
    page = admin_client.get("/admin/schedules/schedule/")
    assert page.status_code == 200 and "every 60 min" in page.content.decode()
    assert admin_client.get(f"/admin/schedules/schedule/{schedule.pk}/change/").status_code == 200
    response = admin_client.post(
        "/admin/schedules/schedule/", {"action": "run_selected_now", "_selected_action": [schedule.pk]}
    )
    assert response.status_code == 302
    assert Run.objects.get().trigger == Run.Trigger.MANUAL


def test_ops_shows_runs_and_the_deliveries_that_failed(owner, admin_client, settings):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port()},
        }
    }
    settings.SCHEDULES_DELIVERY_ATTEMPTS = 1
    schedule = make_schedule(make_claims_report(owner, title="Claims overview"))
    make_subscription(schedule, owner)
    due_now(schedule)
    [run] = run_due()
    assert Delivery.objects.get().status == "failed"

    html = admin_client.get("/ops/").content.decode()
    assert f'data-run="{run.pk}"' in html and "Claims overview" in html
    assert 'id="troubled-deliveries"' in html and "attempt 1: ConnectionRefusedError" in html
    assert admin_client.get(f"/admin/schedules/run/{run.pk}/change/").status_code == 200


def test_a_delivery_whose_worker_died_mid_send_is_shown_failed(owner, admin_client, settings):
    settings.SCHEDULES_RUN_LOST_AFTER = 60
    schedule = make_schedule(make_claims_report(owner))
    make_subscription(schedule, owner)
    due_now(schedule)
    claim_due()
    # The run finishes and queues the e-mail; a worker takes it and is killed while sending.
    call = DBTaskResult.objects.filter(task_path="schedules.tasks.execute_run")
    async_to_sync(execute)(call.get().args_kwargs["args"][0])
    DBTaskResult.objects.filter(task_path="schedules.tasks.deliver").update(
        status="RUNNING", started_at=timezone.now() - datetime.timedelta(minutes=5)
    )
    assert Delivery.objects.get().status == "pending"

    html = admin_client.get("/ops/").content.decode()
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.error.startswith("Its worker stopped while sending; not tried again")
    assert "Its worker stopped while sending" in html
    work()  # the execute_run task row is still queued: running it changes nothing
    assert Delivery.objects.get().status == "failed"
