from __future__ import annotations

from django.apps import AppConfig


class TpaConfig(AppConfig):
    name = "tpa"
    verbose_name = "TPA pipeline"
