"""Fanout settings, driven by environment variables.

Production is the default: DEBUG is off and SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL
must be given. `make demo` and `make test` set DJANGO_DEBUG=1 and point the services at
the embedded Postgres, the Snowflake emulator and (when present) a local Redis.
A wrong value raises ImproperlyConfigured naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def secret(name: str, default: str | None = None) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    if path := os.environ.get(f"{name}_FILE"):
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable (or {name}_FILE).")
    return value


def positive_int(name: str, default: int) -> int:
    value = env.int(name, default=default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive whole number, not {value}.")
    return value


def positive_float(name: str, default: float) -> float:
    value = env.float(name, default=default)
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds, not {value}.")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = secret("DJANGO_SECRET_KEY", "insecure-development-key" if DEBUG else None)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "project.apps.FanoutAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    # Serves the API docs page from static files (otherwise an inline script from a CDN).
    "ninja",
    "project",
    "ops",
    "reports",
    "schedules",
    "tpa",
]

# Django's own middleware, with hooks that do no I/O run on the event loop instead of a
# thread each (project/middleware.py explains why).
MIDDLEWARE = [
    "project.middleware.SecurityMiddleware",
    "project.middleware.ContentSecurityPolicyMiddleware",
    "project.middleware.SessionMiddleware",
    "project.middleware.LocaleMiddleware",
    "project.middleware.CommonMiddleware",
    "project.middleware.CsrfViewMiddleware",
    "project.middleware.AuthenticationMiddleware",
    "project.middleware.LoginRequiredMiddleware",
    "project.navigation.NavigationMiddleware",
    "project.middleware.MessageMiddleware",
    "project.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.template.context_processors.i18n",
                "project.navigation.navigation",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- The app's own tables -------------------------------------------------------------

if "DATABASE_URL" not in os.environ:
    raise ImproperlyConfigured(
        "Set DATABASE_URL (postgresql://user:password@host:port/name), "
        "or run through `make demo` / `make test`, which start an embedded Postgres."
    )
_db = env.db_url("DATABASE_URL")
if _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgresql:// URL; Fanout runs on PostgreSQL.")
# A unix-socket directory given as ?host=/path belongs in HOST.
_db.setdefault("OPTIONS", {})
_db["HOST"] = _db["OPTIONS"].pop("host", _db["HOST"])
_db["OPTIONS"]["pool"] = {
    "min_size": env.int("DATABASE_POOL_MIN", default=1),
    "max_size": positive_int("DATABASE_POOL_MAX", 20),
    "timeout": positive_float("DATABASE_POOL_TIMEOUT", 10.0),
}
DATABASES: dict[str, dict[str, Any]] = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Data sources for reports and the TPA pipeline -----------------------------------

# Every external call has a deadline (DESIGN.md, decision 3); a panel may ask for less.
SOURCE_DEFAULT_TIMEOUT = positive_float("SOURCE_DEFAULT_TIMEOUT", 30.0)
SOURCE_MAX_ROWS = positive_int("SOURCE_MAX_ROWS", 10_000)

SNOWFLAKE_SIGN_IN = {
    "key_pair": "SNOWFLAKE_PRIVATE_KEY_FILE",
    "oauth": "SNOWFLAKE_OAUTH_TOKEN",
    "programmatic_access_token": "SNOWFLAKE_PROGRAMMATIC_ACCESS_TOKEN",
    "password": "SNOWFLAKE_PASSWORD",
}


def _given(name: str) -> bool:
    # The key file is a path already; the secrets may come from NAME or NAME_FILE.
    return bool(os.environ.get(name) or (not name.endswith("_FILE") and os.environ.get(f"{name}_FILE")))


def snowflake_sign_in(debug: bool) -> dict[str, Any]:
    """How Fanout signs in to Snowflake: exactly one method, each complete, or a clear refusal.

    Key pair (SNOWFLAKE_PRIVATE_KEY_FILE, a PEM file, with SNOWFLAKE_PRIVATE_KEY_PASSPHRASE[_FILE]
    when it is encrypted), an OAuth access token, a programmatic access token, or a password:
    https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-connect
    """
    chosen = [method for method, name in SNOWFLAKE_SIGN_IN.items() if _given(name)]
    names = [SNOWFLAKE_SIGN_IN[method] for method in chosen]
    passphrase_given = _given("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
    if len(chosen) > 1:
        raise ImproperlyConfigured(f"Snowflake sign-in: set only one of {', '.join(names)}, not all of them.")
    if passphrase_given and chosen != ["key_pair"]:
        raise ImproperlyConfigured(
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is set without SNOWFLAKE_PRIVATE_KEY_FILE: "
            "set the key file too, or remove the passphrase."
        )
    if not chosen:
        if debug:
            # Unusable until configured (`make demo` and `make test` configure the emulator).
            return {"authenticator": "password", "password": ""}
        raise ImproperlyConfigured(
            "Snowflake sign-in is not configured: set SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER and one of "
            + ", ".join(SNOWFLAKE_SIGN_IN.values())
            + "."
        )
    (method,) = chosen
    if not os.environ.get("SNOWFLAKE_ACCOUNT") and not debug:
        raise ImproperlyConfigured(f"{names[0]} is set without SNOWFLAKE_ACCOUNT: set the account too.")
    if method != "oauth" and not os.environ.get("SNOWFLAKE_USER") and not debug:
        raise ImproperlyConfigured(f"{names[0]} is set without SNOWFLAKE_USER: set the user too.")
    if method == "key_pair":
        return {"authenticator": method, "private_key": _private_key(passphrase_given)}
    if method == "password":
        return {"authenticator": method, "password": secret("SNOWFLAKE_PASSWORD")}
    return {"authenticator": method, "token": secret(SNOWFLAKE_SIGN_IN[method])}


def _private_key(passphrase_given: bool) -> bytes:
    """The key file, decrypted and checked now (a bad file or passphrase stops the start), as DER."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    path = os.environ["SNOWFLAKE_PRIVATE_KEY_FILE"]
    passphrase = secret("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE").encode() if passphrase_given else None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(f"SNOWFLAKE_PRIVATE_KEY_FILE={path!r} cannot be read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise ImproperlyConfigured(
            "SNOWFLAKE_PRIVATE_KEY_FILE is encrypted: set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE (or _FILE)"
            if passphrase is None
            else "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is set but SNOWFLAKE_PRIVATE_KEY_FILE is not encrypted"
        ) from None
    except ValueError:
        raise ImproperlyConfigured(
            "SNOWFLAKE_PRIVATE_KEY_FILE is not a PEM private key, or SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is wrong."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ImproperlyConfigured("SNOWFLAKE_PRIVATE_KEY_FILE must hold an RSA (or EC) private key.")
    der = serialization.Encoding.DER
    return key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def snowflake_report_role(debug: bool) -> str:
    role = env.str("SNOWFLAKE_REPORT_ROLE", default="")
    if not role and not debug:
        raise ImproperlyConfigured(
            "Set SNOWFLAKE_REPORT_ROLE: report queries must run under a read-only Snowflake role, "
            "not the pipeline's (SNOWFLAKE_ROLE)."
        )
    return role


FANOUT_SOURCES: dict[str, dict[str, Any]] = {
    # Report queries on Postgres, as a read-only role with SELECT on the report schemas only
    # (`make demo` and `make test` create one). Without REPORTS_DATABASE_URL, in debug mode
    # only, they use the app's own credentials (read-only transactions, but every table).
    "postgres": {
        "kind": "postgres",
        "url": env.str("REPORTS_DATABASE_URL", default=""),
        "pool_min": env.int("REPORTS_POOL_MIN", default=1),
        "pool_max": positive_int("REPORTS_POOL_MAX", 20),
        "pool_timeout": positive_float("REPORTS_POOL_TIMEOUT", 10.0),
        "connect_timeout": positive_float("REPORTS_CONNECT_TIMEOUT", 5.0),
        # Panels have REPORTS_POOL_MAX connections; each other workload its own few besides
        # (REPORTS_CONCURRENCY_EXPORTS, _PIPELINE, _HEALTH, _CANCEL), so none starves another.
        "concurrency": {
            workload: positive_int(f"REPORTS_CONCURRENCY_{workload.upper()}", default)
            for workload, default in {"exports": 2, "pipeline": 2, "health": 1, "cancel": 2}.items()
        },
    },
    "snowflake": {
        "kind": "snowflake",
        "account": env.str("SNOWFLAKE_ACCOUNT", default="fanout"),
        "user": env.str("SNOWFLAKE_USER", default="fanout"),
        **snowflake_sign_in(DEBUG),
        "host": env.str("SNOWFLAKE_HOST", default=""),
        "port": env.int("SNOWFLAKE_PORT", default=443),
        "protocol": env.str("SNOWFLAKE_PROTOCOL", default="https"),
        "database": env.str("SNOWFLAKE_DATABASE", default="FANOUT"),
        "schema": env.str("SNOWFLAKE_SCHEMA", default="PUBLIC"),
        "warehouse": env.str("SNOWFLAKE_WAREHOUSE", default=""),
        "role": env.str("SNOWFLAKE_ROLE", default=""),
        # Report queries run under this role, which should hold only SELECT (and READ on
        # stages): the warehouse then refuses a write whatever the text. Required in production.
        "report_role": snowflake_report_role(DEBUG),
        # Threads of the panels workload: they carry only the HTTP round trips (submit, status,
        # result download) of asynchronous queries, so a running query holds none.
        "pool_size": positive_int("SNOWFLAKE_POOL_SIZE", 8),
        # Queries each workload may have in flight; each has its own threads as well, so none
        # can starve another (SNOWFLAKE_CONCURRENCY_PANELS, _EXPORTS, _PIPELINE, _HEALTH, _CANCEL).
        "concurrency": {
            workload: positive_int(f"SNOWFLAKE_CONCURRENCY_{workload.upper()}", default)
            for workload, default in {"panels": 64, "exports": 4, "pipeline": 4, "health": 2, "cancel": 4}.items()
        },
        "login_timeout": positive_float("SNOWFLAKE_LOGIN_TIMEOUT", 10.0),
        # Bounds every HTTP request of a session, retries included. With asynchronous queries
        # no request waits for a query, so this bounds round trips and result downloads only.
        "network_timeout": positive_float("SNOWFLAKE_NETWORK_TIMEOUT", 60.0),
        # Sessions older than this are signed out and replaced (Snowflake's session token
        # lasts an hour and renews; the master token lasts four).
        "max_age": positive_float("SNOWFLAKE_CONNECTION_MAX_AGE", 3600.0),
        "keep_alive": env.bool("SNOWFLAKE_KEEP_ALIVE", default=True),
        # Idle sessions kept per role; 0 keeps as many as the workloads may use at once.
        "idle_max": env.int("SNOWFLAKE_IDLE_MAX", default=0),
    },
}


def _refuse_app_credentials_for_reports() -> None:
    """Outside debug mode report SQL never runs with the app's credentials: a read-only
    transaction does not hide the password hashes, a role without grants does."""
    import psycopg.conninfo

    url = FANOUT_SOURCES["postgres"]["url"]
    if not url:
        raise ImproperlyConfigured(
            "Set REPORTS_DATABASE_URL to a read-only role for report queries (SELECT on the report "
            "schemas only): outside debug mode they may not run with DATABASE_URL's credentials."
        )
    try:
        user = psycopg.conninfo.conninfo_to_dict(url).get("user")
    except psycopg.ProgrammingError as exc:
        raise ImproperlyConfigured(f"REPORTS_DATABASE_URL is not a valid postgresql:// URL: {exc}") from exc
    if not user or user == _db.get("USER"):
        raise ImproperlyConfigured(
            f"REPORTS_DATABASE_URL must name a read-only role of its own, not DATABASE_URL's user {_db.get('USER')!r}."
        )


if not DEBUG:
    _refuse_app_credentials_for_reports()

# Reports: the most rows a panel shows, and the deadline of a whole CSV/XLSX export.
REPORTS_MAX_ROWS = positive_int("REPORTS_MAX_ROWS", SOURCE_MAX_ROWS)
REPORTS_EXPORT_TIMEOUT = positive_float("REPORTS_EXPORT_TIMEOUT", 300.0)

# --- Cache -----------------------------------------------------------------------------

if redis_url := env.str("REDIS_URL", default=""):
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # Short: a cache that does not answer within this is treated as down
                # (project.cache.backend), so a black-holed Redis costs a page one timeout.
                "SOCKET_CONNECT_TIMEOUT": positive_float("REDIS_CONNECT_TIMEOUT", 0.2),
                "SOCKET_TIMEOUT": positive_float("REDIS_TIMEOUT", 0.2),
                # A cache outage degrades to a miss instead of failing the page.
                "IGNORE_EXCEPTIONS": True,
            },
            "KEY_PREFIX": "fanout",
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fanout"}}

# Seconds each cache namespace keeps an entry.
CACHE_TTLS = {
    "tpa-list": env.int("CACHE_TTL_TPA_LIST", default=300),
    "master-data": env.int("CACHE_TTL_MASTER_DATA", default=300),
    "filter-options": env.int("CACHE_TTL_FILTER_OPTIONS", default=600),
    "panel-results": env.int("CACHE_TTL_PANEL_RESULTS", default=300),
    "tokens": env.int("CACHE_TTL_TOKENS", default=60),
    # The TPA page's warehouse previews and stage listing: a few seconds spare the warehouse
    # a reload's queries; an upload or a run's progress changes their key at once.
    "tpa-previews": env.int("CACHE_TTL_TPA_PREVIEWS", default=15),
}

# --- TPA pipeline ------------------------------------------------------------------------

TPA_UPLOAD_MAX_BYTES = positive_int("TPA_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
TPA_STAGE_TIMEOUT = positive_float("TPA_STAGE_TIMEOUT", 120.0)
TPA_PROCEDURE_TIMEOUT = positive_float("TPA_PROCEDURE_TIMEOUT", 900.0)
TPA_PREVIEW_TIMEOUT = positive_float("TPA_PREVIEW_TIMEOUT", 15.0)
TPA_SYNC_MAX_WAIT = positive_float("TPA_SYNC_MAX_WAIT", 300.0)
# A running pipeline run beats every TPA_HEARTBEAT_SECONDS; one silent for
# TPA_WORKER_LOST_AFTER (or whose worker process is gone) is marked failed, to be retried.
TPA_HEARTBEAT_SECONDS = positive_float("TPA_HEARTBEAT_SECONDS", 15.0)
TPA_WORKER_LOST_AFTER = positive_float("TPA_WORKER_LOST_AFTER", 120.0)
# Django's ASGI handler spools every request body to a file that moves to disk past
# FILE_UPLOAD_MAX_MEMORY_SIZE (0 would mean "never": DESIGN.md, "Facts added 2026-12"), so
# the default 2.5 MiB stays. Uploaded files go to a temporary file from the first byte.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Bodies are capped while they are read (project/bodylimit.py): these URL names take a
# claim file (plus room for the multipart framing), every other URL DATA_UPLOAD_MAX_MEMORY_SIZE.
# "api:list_files" is the name of /api/tpa/tpas/{code}/files, whose POST is the upload.
REQUEST_BODY_LIMITS = {name: TPA_UPLOAD_MAX_BYTES + 2**20 for name in ("tpa:upload", "api:list_files")}

# --- Background tasks ------------------------------------------------------------------

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- Auth, sessions, security ------------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

SESSION_COOKIE_HTTPONLY = True
# Database sessions whose writes drop every process's signed-in copies (project.auth).
SESSION_ENGINE = "project.auth"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_PROXY", default=False) else None
)

# No inline scripts or styles anywhere: every script is a static file.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# --- i18n, static ----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Metrics ---------------------------------------------------------------------------

# With uvicorn --workers N set PROMETHEUS_MULTIPROC_DIR to a shared empty folder; the
# metrics endpoint then aggregates every worker (prometheus-client multi-process mode).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The connector logs every request at INFO.
        "snowflake.connector": {"level": "WARNING"},
    },
}

# --- Tokens, rate limits (issue 5) ---------------------------------------------------------

# Bearer tokens are checked by OAuth 2.0 introspection (RFC 7662). Without a URL, bearer
# requests get 401 and sessions work as before. An active token is trusted until the
# earlier of its `exp` and CACHE_TTLS["tokens"] (60 s); an inactive one for TOKEN_NEGATIVE_TTL.
TOKEN_INTROSPECTION_URL = env.str("TOKEN_INTROSPECTION_URL", default="")
TOKEN_CLIENT_ID = env.str("TOKEN_CLIENT_ID", default="")
TOKEN_CLIENT_SECRET = secret("TOKEN_CLIENT_SECRET", "")
TOKEN_INTROSPECTION_TIMEOUT = positive_float("TOKEN_INTROSPECTION_TIMEOUT", 5.0)
TOKEN_NEGATIVE_TTL = positive_int("TOKEN_NEGATIVE_TTL", 10)
# A token's user is found by its (issuer, subject) (project.models.TokenIdentity); the
# username claim only names a user created on first sight.
TOKEN_USERNAME_CLAIM = env.str("TOKEN_USERNAME_CLAIM", default="username")
TOKEN_GROUPS_CLAIM = env.str("TOKEN_GROUPS_CLAIM", default="groups")
# The allow-list of groups a token may grant: claimed name=local group name, comma-separated
# ("idp-analysts=Analysts,idp-ops=Operations"). Claimed groups not listed grant nothing.
TOKEN_GROUPS: dict[str, str] = env.dict("TOKEN_GROUPS", default={})


def rate(name: str, default: str) -> str:
    """A limit such as 30/m, 20/h or 100/10m (count / [n]s|m|h|d), checked here."""
    import re

    value = env.str(name, default=default)
    if not re.fullmatch(r"[1-9]\d*/[1-9]?\d*[smhd]", value):
        raise ImproperlyConfigured(f"{name} must look like 30/m, 20/h or 100/10m, not {value!r}.")
    return value


# Per user (per address when anonymous); counted in the cache, so shared across processes.
RATE_LIMITS = {
    "report-run": rate("RATE_LIMIT_REPORT_RUN", "30/m"),
    "fresh": rate("RATE_LIMIT_FRESH", "10/m"),
    "upload": rate("RATE_LIMIT_UPLOAD", "20/h"),
    "pipeline-start": rate("RATE_LIMIT_PIPELINE_START", "10/h"),
    # Each export reads a panel's every row; a few a minute is what a person clicks.
    "export": rate("RATE_LIMIT_EXPORT", "20/m"),
    # Calls to the auth server per client address (cached verdicts are free): a client
    # sending ever new tokens cannot make the auth server do unbounded work.
    "token-introspection": rate("RATE_LIMIT_TOKEN_INTROSPECTION", "30/m"),
}

# /health?deep=1 without a staff login answers from the last round of pings, at most this old.
HEALTH_DEEP_MAX_AGE = positive_float("HEALTH_DEEP_MAX_AGE", 5.0)

# How often each process adds its cache hit/miss counts to the shared counters.
CACHE_STATS_FLUSH_SECONDS = positive_float("CACHE_STATS_FLUSH_SECONDS", 5.0)
# After a failed cache call, how long the cache counts as down before one call tries it again.
CACHE_BREAKER_SECONDS = positive_float("CACHE_BREAKER_SECONDS", 5.0)

# Pages accept a bearer token too (the API checks it itself as well).
MIDDLEWARE.insert(
    MIDDLEWARE.index("project.middleware.AuthenticationMiddleware") + 1,
    "project.tokens.BearerTokenMiddleware",
)
if CACHE_TTLS["tokens"] > 60:
    raise ImproperlyConfigured("CACHE_TTL_TOKENS must be at most 60: a revoked token stays trusted that long.")


# --- Schedules, subscriptions and alerts (issue 14) --------------------------------------

# How often `manage.py scheduler` looks for due schedules, and the most it claims at once.
SCHEDULES_TICK_SECONDS = positive_float("SCHEDULES_TICK_SECONDS", 10.0)
SCHEDULES_BATCH = positive_int("SCHEDULES_BATCH", 50)
# A failed e-mail or webhook is tried this many times in all, waiting base * 2^n between tries.
SCHEDULES_DELIVERY_ATTEMPTS = positive_int("SCHEDULES_DELIVERY_ATTEMPTS", 5)
SCHEDULES_RETRY_BASE_SECONDS = positive_float("SCHEDULES_RETRY_BASE_SECONDS", 30.0)
SCHEDULES_WEBHOOK_TIMEOUT = positive_float("SCHEDULES_WEBHOOK_TIMEOUT", 10.0)
# Webhooks to loopback and private addresses are refused unless this is on (a receiver on
# the same network, or the tests' loopback server).
SCHEDULES_WEBHOOK_PRIVATE_OK = env.bool("SCHEDULES_WEBHOOK_PRIVATE_OK", default=False)
# Rendering one PDF (Chromium, in the task worker) may take this long.
SCHEDULES_PDF_TIMEOUT = positive_float("SCHEDULES_PDF_TIMEOUT", 120.0)
SCHEDULES_CHROMIUM = env.str("SCHEDULES_CHROMIUM", default="/usr/bin/chromium")
# A run with no result this long after it started lost its worker: it is shown failed.
SCHEDULES_RUN_LOST_AFTER = positive_float("SCHEDULES_RUN_LOST_AFTER", 900.0)
# Links in e-mails point here.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# Mail (Django 6.1 MAILERS): SMTP when EMAIL_HOST is set; otherwise (the demo) each message
# is a file under .data/mail/, where a person can read it.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="fanout@localhost")
if email_host := env.str("EMAIL_HOST", default=""):
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": email_host,
                "port": env.int("EMAIL_PORT", default=25),
                "username": env.str("EMAIL_HOST_USER", default="") or None,
                "password": secret("EMAIL_HOST_PASSWORD", "") or None,
                "use_tls": env.bool("EMAIL_USE_TLS", default=False),
                # Bounds every socket call of the SMTP conversation.
                "timeout": positive_float("EMAIL_TIMEOUT", 30.0),
            },
        }
    }
else:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".data" / "mail"))},
        }
    }
