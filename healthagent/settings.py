"""Settings for the whole site, read from the environment with safe local defaults.

Two shapes of deployment share this file:

* **embedded** (no ``REDIS_URL``): SQLite under ``var/``, an in-memory channel layer and a Celery
  worker on kombu's filesystem transport. This is what ``make demo`` and a laptop's ``make test`` use.
* **production** (``HEALTHAGENT_PROFILE=production``): secrets must come from the environment,
  cookies are secure, HSTS is on; ``DATABASE_URL`` and ``REDIS_URL`` point at PostgreSQL and Redis.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import plotly
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HEALTHAGENT_VAR_DIR", BASE_DIR / "var"))

PROFILE = os.environ.get("HEALTHAGENT_PROFILE", "local")
if PROFILE not in {"local", "production"}:
    raise ImproperlyConfigured(f"HEALTHAGENT_PROFILE must be 'local' or 'production', not {PROFILE!r}.")
PRODUCTION = PROFILE == "production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def local_secret(name: str) -> str:
    """A secret from the environment; locally, one generated once and kept under ``var/``.

    Production never falls back: a missing secret there is a configuration error, not a default.
    """
    value = os.environ.get(name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in the environment in the production profile.")
    path = VAR_DIR / "secrets" / name.lower()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = local_secret("SECRET_KEY")
# Keys the pseudonyms of imported participants (HMAC); see healthagent/cohort/anonymize.py.
ANONYMIZATION_KEY = local_secret("ANONYMIZATION_KEY")

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    # API tokens (django-rest-knox): stored as hashes, each with an expiry, revoked one by one on the account page.
    "knox",
    "drf_spectacular",
    "django_filters",
    "axes",
    "healthagent",
    "modeling",
    "healthagent.agent",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise (static files stay cacheable): every other response is no-store.
    "healthagent.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "healthagent.middleware.SessionIdleMiddleware",
    "healthagent.middleware.NulCharacterMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "healthagent.middleware.ContentSecurityPolicyMiddleware",  # django-csp's policy, built once
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "healthagent.urls"
WSGI_APPLICATION = "healthagent.wsgi.application"
ASGI_APPLICATION = "healthagent.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "healthagent.roles.roles_context",
                "healthagent.notifications.notifications_context",
            ],
            # {% static %} (no {% load static %}: that would load Django's) and {% url %} that work out the URLs fixed
            # for the process once (the module says why).
            "builtins": ["healthagent.templatetags.fixed_urls"],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite is shared by the web process and the embedded worker: WAL lets them read while one
# writes, IMMEDIATE transactions take the write lock up front instead of failing half-way.
SQLITE_PATH = VAR_DIR / "healthagent.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
# The test database's name spelled out: processes forked by the websocket live server derive it
# from this instead of prefixing "test_" a second time.
DATABASES["default"]["TEST"] = {
    "NAME": None if "sqlite" in DATABASES["default"]["ENGINE"] else f"test_{DATABASES['default']['NAME']}"
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", PRODUCTION):
    # Under ASGI each request has its own connection object, so CONN_MAX_AGE cannot keep one open
    # across requests: without a pool every request opens (and PostgreSQL forks) a new one. The pool
    # is per process; Django checks a pooled connection before lending it, so one that died while idle is replaced.
    # Added to what DATABASE_URL's query says (sslmode, sslrootcert, ...), never in its place.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "pool": {"min_size": 2, "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "8"))},
            # TCP keepalives: a pooled connection whose server went away without a word (a firewall's or load balancer's
            # idle timeout, a crashed host) shows an error on its socket within about 90 s idle, which the pool's check
            # of a connection it lends looks for (healthagent.dbpool).
            "keepalives": 1,
            "keepalives_idle": 60,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The hottest reads (healthagent.joined.prepared_cursor: a rater's assignment with its joins, the request's user)
    # are prepared once per connection, so PostgreSQL plans them once, not on every request (planning was most of
    # their cost). Every other statement keeps Django's client-side binding, which never prepares. Off for a
    # transaction-mode PgBouncer older than 1.21, which cannot keep a connection's prepared statements.
    prepared = env_bool("DATABASE_PREPARED_STATEMENTS", True)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0 if prepared else None
    options = DATABASES["default"]["OPTIONS"]
    given = options.get("options", os.environ.get("PGOPTIONS", ""))  # set here, libpq would ignore PGOPTIONS
    if prepared and env_bool("DATABASE_GENERIC_PLANS", True) and "plan_cache_mode" not in given:
        # Planned once, as they are written to be: left to choose, PostgreSQL planned some of them again on every
        # execution (its estimate of their generic plan's cost above its custom plans'), 1.0 ms of its 4.8 ms of CPU
        # per rated item under the load test (pg_stat_statements). Only prepared statements have a generic plan, so
        # Django's own statements, bound on the client, are planned as before. A startup option: a PgBouncer
        # refuses it unless plan_cache_mode is in its track_extra_parameters (or DATABASE_GENERIC_PLANS=0).
        options["options"] = f"{given} -c plan_cache_mode=force_generic_plan".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Caches ----------------------------------------------------------------------------------
# Chart figures (healthagent/cohort/charts.py) are cached in each web process's memory: a hit costs
# no network round trip, and a Redis restart cannot fail a page. 256 figures of ~210 KB at most.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "charts": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "charts",
        "TIMEOUT": 6 * 3600,
        "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("CHART_CACHE_ENTRIES", "256"))},
    },
    # Rendered parts of pages that are the same for every reader (evaluation.item_page), per web process.
    "fragments": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "fragments",
        "TIMEOUT": 6 * 3600,
        "OPTIONS": {"MAX_ENTRIES": int(os.environ.get("FRAGMENT_CACHE_ENTRIES", "1000"))},
    },
}

# Chart figures as compressed files, built once per deployment (healthagent.cohort.charts.minute_figure_file): every
# web process reads them; STUDY_CHARTS_AT_OPEN builds a study's when it opens (a job on the quick queue).
CHART_ROOT = Path(os.environ.get("CHART_ROOT", str(VAR_DIR / "charts")))
STUDY_CHARTS_AT_OPEN = env_bool("STUDY_CHARTS_AT_OPEN", True)
# How long the chart address a rating page mints stays good for its session (evaluation.chart_links: the web server
# answers it from the file, without Django's request machinery); 0 turns the links off (the chart view serves all).
CHART_LINK_SECONDS = int(os.environ.get("CHART_LINK_SECONDS", "120"))

# --- Broker, channel layer -------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED = not REDIS_URL
if PRODUCTION and EMBEDDED:
    raise ImproperlyConfigured("REDIS_URL must be set in the production profile.")

CELERY_DATA_DIR = VAR_DIR / "celery"
if EMBEDDED:
    # Tasks go through files under var/celery: no server, and a separate worker process, so a
    # request that queues a job returns at once. Limits are in the README.
    for folder in ("queue", "processed", "results", "control"):
        (CELERY_DATA_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),  # broadcast exchanges; kombu's default is ./control
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{CELERY_DATA_DIR / 'results'}"
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi")},
        }
    }
    # Sessions read from Redis and kept in PostgreSQL (healthagent/sessions.py): one query fewer per request. Short
    # timeouts: while Redis restarts, a request reads its session from the database instead of waiting.
    CACHES["sessions"] = {
        "BACKEND": "healthagent.sessions.RedisCache",  # Django's, with one Redis client per pool
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "sessions",
        "OPTIONS": {
            "socket_connect_timeout": 0.25,
            "socket_timeout": 0.5,
            "serializer": "healthagent.sessions.JSONSerializer",  # JSON, never pickle
        },
    }
    SESSION_ENGINE = "healthagent.sessions"
    SESSION_CACHE_ALIAS = "sessions"
# How long a session's cached copy lives at most: a log-out during a Redis outage ends the session within this time.
SESSION_CACHE_SECONDS = int(os.environ.get("SESSION_CACHE_SECONDS", "300"))

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# The job queues, a worker (or more) each: "cpu" and "gpu" by the model's size; "quick" for the short jobs a person
# waits for on a page (a twin simulation of one participant), so they never wait behind a training run.
JOB_QUEUES = ("cpu", "gpu", "quick")
# Long jobs: a worker takes one message at a time and acknowledges it only when done, so a
# killed worker's job is delivered again (modeling.tasks resumes it from its checkpoint).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# API tokens: made and revoked by their owner on the account page (healthagent/tokens.py), never by another user.
API_TOKEN_MAX_DAYS = int(os.environ.get("API_TOKEN_MAX_DAYS", "90"))
API_TOKEN_LIMIT_PER_USER = 10
KNOX_TOKEN_MODEL = "knox.AuthToken"  # named for the migrations of ApiTokenScope, which points at it
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_MAX_DAYS),  # the longest; the owner may choose a shorter one
    "TOKEN_LIMIT_PER_USER": API_TOKEN_LIMIT_PER_USER,
    "AUTO_REFRESH": False,  # a token ends when it was said to, however often it is used
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Health agent evaluation API",
    "DESCRIPTION": "Studies, their items, ratings, skips and statistics; creating, opening, closing studies and "
    "enrolling clinicians; queueing jobs and following them. For researchers and admins: send Authorization: Token "
    "<token> (make one on your account page; writes need a token with the write scope).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "evaluation.api.schema_error_responses",
    ],
}
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Requests per user to the API (evaluation.api.ApiRate): a runaway script gets 429, the site stays up.
    "DEFAULT_THROTTLE_RATES": {"api": os.environ.get("API_RATE", "1200/minute")},
}
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username from
# one address (or the larger limits per username and per address below), that pair is locked out for LOGIN_LOCKOUT_MINUTES or until an admin resets it
# (Django admin > Axes > Access attempts, or `manage.py axes_reset_username NAME`).
PASSWORD_BACKENDS = [
    "healthagent.accounts.LoginThrottleBackend",
    "healthagent.accounts.PasswordBackend",
    # Only to read sessions signed in before PasswordBackend replaced it (2026-12-04): a session names the backend that
    # signed it in, and one naming a backend not listed here is signed out. PasswordBackend refuses a wrong password
    # for good, so this one never checks a password.
    "django.contrib.auth.backends.ModelBackend",
]
# Single sign-on with OpenID Connect (healthagent/sso.py, mozilla-django-oidc): on when OIDC_RP_CLIENT_ID is set. The
# identity provider's endpoints come from its discovery document (`manage.py oidc_discover ISSUER` prints them).
# OIDC_ROLE_CLAIM names the claim (a list or a space/comma-separated string) whose values OIDC_ROLES maps to roles:
# "clinician=clinicians|doctors,researcher=research,admin=evaluation-admins". A person none of whose values is mapped
# is refused; roles follow the claim at every sign-in. PASSWORD_LOGIN=false leaves single sign-on the only way in.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
OIDC_ROLE_CLAIM = os.environ.get("OIDC_ROLE_CLAIM", "groups")
OIDC_ROLES = os.environ.get("OIDC_ROLES", "")
# Values of the same claim ('|'-separated) that make a clinician a safety adjudicator; when set, only they may be named
# a study's adjudicators (healthagent.roles.ADJUDICATOR_GROUP).
OIDC_ADJUDICATORS = os.environ.get("OIDC_ADJUDICATORS", "")
OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME", "the hospital's single sign-on")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
LOGIN_REDIRECT_URL_FAILURE = "/login/"
PASSWORD_LOGIN = env_bool("PASSWORD_LOGIN", True)
AUTHENTICATION_BACKENDS = (["healthagent.sso.HospitalOIDCBackend"] if OIDC_RP_CLIENT_ID else []) + (
    PASSWORD_BACKENDS if PASSWORD_LOGIN else []
)
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "60")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Beyond the pair: one username from any addresses, and one address over any usernames, within the lockout time
# (healthagent.accounts.LoginThrottleBackend). Larger, since a hospital's users may share one address.
LOGIN_FAILURE_LIMIT_PER_USERNAME = int(os.environ.get("LOGIN_FAILURE_LIMIT_PER_USERNAME", "20"))
LOGIN_FAILURE_LIMIT_PER_ADDRESS = int(os.environ.get("LOGIN_FAILURE_LIMIT_PER_ADDRESS", "50"))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "healthagent.accounts.client_ip_address"
# How many reverse proxies in front of the site append to X-Forwarded-For (0: use the peer address).
# Production must say: behind the TLS proxy a default of 0 would give every client the proxy's
# address, and one person's wrong passwords would lock any user out.
if PRODUCTION and not os.environ.get("TRUSTED_PROXY_COUNT"):
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT must be set in the production profile (1 behind one TLS proxy, 0 without a proxy)."
    )
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT") or "0")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Files -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at start-up when it is missing
# plotly.js is served from the copy inside the installed plotly package, so the version the
# Python figures are written for is the version the browser runs, with no CDN.
PLOTLY_JS_DIR = Path(plotly.__file__).parent / "package_data"
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", PLOTLY_JS_DIR)]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
TRAJECTORY_ROOT = Path(os.environ.get("TRAJECTORY_ROOT", VAR_DIR / "trajectories"))
MEDIA_ROOT = VAR_DIR / "media"
# Largest file (or export folder) an import reads; bigger ones are refused before parsing.
COHORT_IMPORT_MAX_BYTES = int(os.environ.get("COHORT_IMPORT_MAX_BYTES", str(8 * 1024**3)))
# An upload not handed to an import within this many hours is deleted (healthagent.cohort.uploads).
UPLOAD_KEEP_HOURS = float(os.environ.get("UPLOAD_KEEP_HOURS", "24"))
# Largest request body the site reads (forms, drafts, one chunk of a cohort upload): a bigger one is refused with
# 400 (templates/400.html) before any view sees it. Cohort exports come up in chunks of half this
# (healthagent/cohort/uploads.py), each file at most COHORT_IMPORT_MAX_BYTES; the one multipart file field, the
# invitations' CSV, is refused above 1 MiB by its view.
# (FILE_UPLOAD_MAX_MEMORY_SIZE is left at Django's default: it is not a limit, only the size above which
# an uploaded file is spooled to disk.)
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("UPLOAD_MAX_BYTES", str(1024**2)))
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# --- Email -----------------------------------------------------------------------------------
# Off unless EMAIL_HOST is set: notifications (a safety incident to adjudicate) are then emailed as well as shown in
# the site. SITE_URL (e.g. https://eval.hospital.org) makes the links in emails absolute.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "healthagent@localhost")
SITE_URL = os.environ.get("SITE_URL", "").rstrip("/")
# How long an invitation's link works (healthagent/invitations.py).
INVITATION_DAYS = int(os.environ.get("INVITATION_DAYS", "14"))

# Language-model servers an agent variant or a judge may call (OpenAI-compatible backend): host names, or
# host:port; empty allows any host. The API key of a server is read from the workers' environment variable the
# variant names, which must start with HEALTHAGENT_LLM_ (healthagent.agent.backends.openai_http).
LLM_ALLOWED_HOSTS = env_list("LLM_ALLOWED_HOSTS", "")

# --- Webhooks (healthagent/webhooks.py) ------------------------------------------------------
# Signed events to the receivers researchers and admins register. A failed attempt (no answer, or not 2xx) is tried
# again after WEBHOOK_RETRY_BASE_S, then twice as long each time (at most WEBHOOK_RETRY_MAX_S), WEBHOOK_MAX_ATTEMPTS
# attempts in all. WEBHOOK_ALLOWED_HOSTS: the hosts (or host:port) an endpoint may name; empty allows any.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")
WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", "10"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "8"))
WEBHOOK_RETRY_BASE_S = float(os.environ.get("WEBHOOK_RETRY_BASE_S", "30"))
WEBHOOK_RETRY_MAX_S = float(os.environ.get("WEBHOOK_RETRY_MAX_S", "3600"))

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# A session ends after SESSION_IDLE_MINUTES without a request (requests renew it: healthagent.middleware
# .SessionIdleMiddleware): a workstation left signed in on a ward does not stay open to the next person. 8 hours by
# default, a clinical shift.
SESSION_COOKIE_AGE = 60 * int(os.environ.get("SESSION_IDLE_MINUTES", str(8 * 60)))
# htmx sends the token from the hx-headers attribute in base.html; scripts never read the cookie.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content Security Policy (django-csp), in every profile: scripts only from our own static files
# (no inline script, no eval: htmx runs with allowEval off, plotly.js needs no eval for the chart
# types we draw, tests/test_browser_security.py checks every page in Chromium). Styles allow
# 'unsafe-inline' because plotly.js writes its own <style> rules and style attributes while drawing.
# connect-src 'self' covers the page's own websocket origin (CSP Level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in the production profile.")


def client_error_without_traceback(record) -> bool:
    """A logging filter: a 4xx response (a 403 for a page outside the user's role, a 404) is expected,
    so it is logged as its one line; Django attaches the exception's traceback. 5xx keep theirs."""
    if 400 <= getattr(record, "status_code", 0) < 500:
        record.exc_info, record.exc_text = None, None
    return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "client_error_without_traceback": {
            "()": "django.utils.log.CallbackFilter",
            "callback": client_error_without_traceback,
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # axes logs every log-in at INFO; failures and lockouts are WARNING and above.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "django.request": {"filters": ["client_error_without_traceback"]},
    },
}

# --- Anonymization -------------------------------------------------------------------------------
# The smallest k an import may use (healthagent/cohort/anonymize.py): a smaller one is refused unless the import allows
# it explicitly (import_cohort --allow-k-below-minimum), which the audit log records; below 2 nothing is allowed.
ANONYMIZATION_MIN_K = int(os.environ.get("ANONYMIZATION_MIN_K", "5"))
if ANONYMIZATION_MIN_K < 2:
    raise ImproperlyConfigured(f"ANONYMIZATION_MIN_K must be at least 2, not {ANONYMIZATION_MIN_K}.")
