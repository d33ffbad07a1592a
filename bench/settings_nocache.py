"""The project's settings with the cache off: every cache read misses, every load runs.

    DJANGO_SETTINGS_MODULE=bench.settings_nocache uvicorn project.asgi:application

Used by bench/cache.py to show what the cached TPA list saves.
"""

from __future__ import annotations

from project.settings import *  # noqa: F403

CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
