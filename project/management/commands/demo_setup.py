from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand

# What each app contributes to the demo, run in this order when the app provides it.
DEMO_STEPS = ("snowflake_deploy", "load_demo_tpas", "load_demo_reports", "load_demo_schedules")


class Command(BaseCommand):
    help = "Prepare the demo: a superuser whose credentials are printed, then each app's demo data."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_USERNAME", "admin")
        password = os.environ.get("DEMO_PASSWORD", "fanout-demo")
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        available = get_commands()
        for step in DEMO_STEPS:
            if step in available:
                call_command(step)
        self.stdout.write(
            self.style.SUCCESS(f"Demo superuser {'created' if created else 'ready'}: ")
            + f"username {username!r}, password {password!r}"
        )
