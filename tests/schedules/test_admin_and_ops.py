"""Staff see and run every report's schedules in the admin, and the run history in /ops/."""

from __future__ import annotations

import pytest
from django.test import Client

from schedules.models import Delivery, Run
from tests.conftest import make_user
from tests.schedules.conftest import due_now, make_claims_report, make_schedule, make_subscription, run_due

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
    from devtools.services import free_port

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
    from tests.tpa.conftest import work

    work()
    assert Delivery.objects.get().status == "failed"

    html = admin_client.get("/ops/").content.decode()
    assert f'data-run="{run.pk}"' in html and "Claims overview" in html
    assert 'id="troubled-deliveries"' in html and "attempt 1: ConnectionRefusedError" in html
    assert admin_client.get(f"/admin/schedules/run/{run.pk}/change/").status_code == 200
