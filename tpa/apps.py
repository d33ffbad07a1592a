from __future__ import annotations

from django.apps import AppConfig


class TpaConfig(AppConfig):
    name = "tpa"
    verbose_name = "TPA pipeline"

    def ready(self) -> None:
        from tpa.cache import register_warmers

        register_warmers()
