"""The test identity provider's settings: its own SQLite database and cookies, so it shares nothing with the site."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "test-identity-provider-only"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
SITE_URL = os.environ["IDP_SITE_URL"]  # e.g. http://localhost:PORT (django-oidc-provider's issuer is SITE_URL/openid)
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oidc_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.idp.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["IDP_DATABASE"]}}
USE_TZ = True
LOGIN_URL = "/login/"
SESSION_COOKIE_NAME = "idp_session"
CSRF_COOKIE_NAME = "idp_csrftoken"
OIDC_USERINFO = "tests.idp.claims.userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "tests.idp.claims.GroupsClaims"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
