"""The scheduler queues each due run once: across processes, after downtime, around locks."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from schedules.models import Run, Schedule
from schedules.scheduler import claim_due
from tests.schedules.conftest import Processes, make_claims_report, make_schedule

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_queues_a_due_schedule_once_and_moves_its_next_run_past_now(owner):
    schedule = make_schedule(make_claims_report(owner))
    due = timezone.now() - datetime.timedelta(minutes=1)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=due)

    [run] = claim_due()
    assert claim_due() == []

    schedule.refresh_from_db()
    assert (run.schedule_id, run.due_at, run.status, run.trigger) == (schedule.pk, due, "queued", "schedule")
    assert schedule.next_run_at == due + datetime.timedelta(hours=1)
    task = DBTaskResult.objects.get(pk=run.task_id)
    assert (task.task_path, task.args_kwargs["args"]) == ("schedules.tasks.execute_run", [run.pk])


def test_it_catches_up_once_after_a_scheduler_was_down_for_many_ticks(owner):
    schedule = make_schedule(make_claims_report(owner), interval_minutes=15)
    missed = timezone.now() - datetime.timedelta(hours=5, minutes=3)  # twenty ticks ago
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=missed)

    assert len(claim_due()) == 1
    assert claim_due() == []
    schedule.refresh_from_db()
    # On the old rhythm, the first tick after now.
    assert timezone.now() < schedule.next_run_at <= timezone.now() + datetime.timedelta(minutes=15)
    assert (schedule.next_run_at - missed) % datetime.timedelta(minutes=15) == datetime.timedelta(0)


def test_it_reads_a_cron_expression_in_the_schedules_time_zone(owner):
    schedule = make_schedule(
        make_claims_report(owner), kind=Schedule.Kind.CRON, cron="0 7 * * *", timezone="Europe/Paris"
    )
    winter = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    summer = datetime.datetime(2026, 7, 1, 12, 0, tzinfo=datetime.UTC)
    assert schedule.next_after(winter) == datetime.datetime(2026, 12, 2, 6, 0, tzinfo=datetime.UTC)
    assert schedule.next_after(summer) == datetime.datetime(2026, 7, 2, 5, 0, tzinfo=datetime.UTC)


def test_it_leaves_a_schedule_another_scheduler_holds_to_that_scheduler(owner):
    report = make_claims_report(owner)
    held, free = make_schedule(report, interval_minutes=60), make_schedule(report, interval_minutes=61)
    Schedule.objects.update(next_run_at=timezone.now() - datetime.timedelta(minutes=1))
    locked, release = threading.Event(), threading.Event()

    def other_scheduler() -> None:
        # Another scheduler mid-claim: it holds the row lock until it commits.
        from django.db import transaction

        with transaction.atomic():
            Schedule.objects.select_for_update().get(pk=held.pk)
            locked.set()
            release.wait(30)
        connections.close_all()

    thread = threading.Thread(target=other_scheduler)
    thread.start()
    try:
        assert locked.wait(30)
        assert [run.schedule_id for run in claim_due()] == [free.pk]
    finally:
        release.set()
        thread.join()
    assert [run.schedule_id for run in claim_due()] == [held.pk]


def test_two_scheduler_processes_queue_each_due_run_once(owner, processes: Processes):
    report = make_claims_report(owner)
    # Schedules of one report differ in their timing (a constraint refuses twins).
    schedules = [make_schedule(report, interval_minutes=60 + n) for n in range(30)]
    Schedule.objects.update(next_run_at=timezone.now() - datetime.timedelta(minutes=1))

    for name in ("scheduler-a", "scheduler-b"):
        processes.start(name, "scheduler", "--tick", "0.05")
    processes.wait_until(lambda: not Schedule.objects.due(timezone.now()).exists(), "every schedule claimed")
    processes.stop_all()

    runs = list(Run.objects.values_list("schedule_id", flat=True))
    assert sorted(runs) == sorted(schedule.pk for schedule in schedules)
    assert DBTaskResult.objects.filter(task_path="schedules.tasks.execute_run").count() == 30
    logs = processes.logs()
    assert "queued run" in logs


def test_a_scheduler_started_after_a_gap_catches_up_once(owner, processes: Processes):
    schedule = make_schedule(make_claims_report(owner), interval_minutes=5)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - datetime.timedelta(days=2))

    for name in ("first-start", "second-start"):
        process = processes.start(name, "scheduler", "--once")
        assert process.wait(60) == 0, processes.logs()

    assert Run.objects.filter(schedule=schedule).count() == 1


def backends_waiting_to_enqueue() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s",
            [f'INSERT INTO "{DBTaskResult._meta.db_table}"%'],
        )
        return [row[0] for row in cursor.fetchall()]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_a_scheduler_killed_mid_claim_leaves_nothing_half_done_and_another_takes_over(owner, processes: Processes):
    import psycopg

    report = make_claims_report(owner)
    schedules = [make_schedule(report, interval_minutes=60 + n) for n in range(3)]
    Schedule.objects.update(next_run_at=timezone.now() - datetime.timedelta(minutes=1))
    db = connection.settings_dict
    # Hold the task table: the scheduler locks the schedules, records the runs and advances
    # them, then waits here to enqueue, in the middle of its transaction.
    holder = psycopg.connect(host=db["HOST"], user=db["USER"], dbname=db["NAME"])
    holder.execute(f'LOCK TABLE "{DBTaskResult._meta.db_table}" IN EXCLUSIVE MODE')
    try:
        killed = processes.start("killed", "scheduler", "--tick", "0.05")
        processes.wait_until(lambda: bool(backends_waiting_to_enqueue()), "the scheduler waiting to enqueue")
        [backend] = backends_waiting_to_enqueue()
        processes.kill(killed)
    finally:
        holder.rollback()
        holder.close()
    # Its transaction ends with its connection: the schedules are free again.
    processes.wait_until(lambda: not backend_alive(backend), "the killed scheduler's connection gone")
    assert not Run.objects.exists()
    assert Schedule.objects.due(timezone.now()).count() == 3

    other = processes.start("other", "scheduler", "--once")
    assert other.wait(60) == 0, processes.logs()
    runs = Run.objects.all()
    assert sorted(Run.objects.values_list("schedule_id", flat=True)) == sorted(schedule.pk for schedule in schedules)
    assert all(DBTaskResult.objects.filter(pk=run.task_id).exists() for run in runs)
