from __future__ import annotations

from django.apps import AppConfig


class TpaConfig(AppConfig):
    name = "tpa"
    verbose_name = "TPA pipeline"

    def ready(self) -> None:
        from tpa.cache import connect_signals, register_warmers

        connect_signals()
        register_warmers()
