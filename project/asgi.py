from __future__ import annotations

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from project.bodylimit import ASGIApp, BodyLimitMiddleware
from project.requestthreads import RequestThreads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_application = get_asgi_application()
application: ASGIApp = django_application

if settings.DEBUG:
    # Development serves /static/ itself; production serves collected files from a proxy.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_application)

# Each request's thread-sensitive sync code on a kept thread (project/requestthreads.py).
application = RequestThreads(application)

# Outermost, so no body over its URL's limit is read whole by anything (project/bodylimit.py).
application = BodyLimitMiddleware(application)
