"""A real OpenID Connect provider for the single sign-on tests: django-oidc-provider in its own Django project,
served by gunicorn in a second process on loopback (tests/test_browser_sso.py starts it)."""
