"""The project's own health: migrations match the models, the production profile is deploy-clean."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def run_manage(*args, env_overrides):
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "HEALTHAGENT_PROFILE"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


PRODUCTION_ENV = {
    "HEALTHAGENT_PROFILE": "production",
    "SECRET_KEY": "x7!kq2-production-like-secret-key-with-enough-entropy-0c9f3a1b",
    "ANONYMIZATION_KEY": "another-secret-for-pseudonyms",
    "ALLOWED_HOSTS": "evaluation.example.org",
    "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    "TRUSTED_PROXY_COUNT": "1",
}


def test_production_profile_passes_check_deploy_without_warnings(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env_overrides={**PRODUCTION_ENV, "HEALTHAGENT_VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# TRUSTED_PROXY_COUNT: behind the TLS proxy a default of 0 would give every client the proxy's address,
# so one person's wrong passwords would lock any user out.
@pytest.mark.parametrize("missing", ["SECRET_KEY", "ANONYMIZATION_KEY", "REDIS_URL", "TRUSTED_PROXY_COUNT"])
def test_production_profile_refuses_to_start_without_its_secrets_and_services(tmp_path, missing):
    env = {**PRODUCTION_ENV, "HEALTHAGENT_VAR_DIR": str(tmp_path), missing: ""}
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


def test_production_profile_refuses_debug(tmp_path):
    result = run_manage("check", env_overrides={**PRODUCTION_ENV, "HEALTHAGENT_VAR_DIR": str(tmp_path), "DEBUG": "1"})
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


LOAD_THE_LIBRARY = """
import importlib, json, pkgutil, sys
import modeling.ml
for module in pkgutil.walk_packages(modeling.ml.__path__, "modeling.ml."):
    importlib.import_module(module.name)
from modeling.ml.__main__ import main
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {"django", "healthagent", "evaluation", "celery", "channels"}
                or (name.startswith("modeling.") and not name.startswith("modeling.ml")))
print(json.dumps({"library": sum(name.startswith("modeling.ml") for name in sys.modules), "site": loaded}))
"""


def test_modeling_ml_loads_no_django_and_nothing_of_the_site():
    """modeling/ml is a PyTorch library that torchrun runs without Django: every module of it and its command line, imported
    in a fresh interpreter, load no Django, Celery or Channels and no module of the site (import-linter checks the
    imports inside functions too)."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_THE_LIBRARY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["library"] > 40  # every module was imported
    assert loaded["site"] == []


def test_the_site_starts_without_loading_the_model_libraries():
    """Web processes, management commands and idle workers start light: torch, transformers and scikit-learn load
    when a job or a page needs a model, not when Django starts (the agent's app registering its job kind and the
    head search's language model once pulled them all in)."""
    code = (
        "import os, sys, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'healthagent.settings'; import django; "
        "django.setup(); print(json.dumps(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_no_template_comment_spans_lines():
    """Django's {# #} comments end at the line's end: one spanning lines is shown to the user as text."""
    spanning = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "{#" in line and "#}" not in line.split("{#", 1)[1]
    ]
    assert spanning == [], "use {% comment %} for comments over several lines"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "-c plan_cache_mode=force_generic_plan"),
        ({"PGOPTIONS": "-c statement_timeout=5000"}, "-c statement_timeout=5000 -c plan_cache_mode=force_generic_plan"),
        ({"PGOPTIONS": "-c plan_cache_mode=auto"}, None),  # the operator's own, kept (libpq reads PGOPTIONS)
        ({"DATABASE_GENERIC_PLANS": "0"}, None),  # behind a PgBouncer that does not track the parameter
        ({"DATABASE_PREPARED_STATEMENTS": "0"}, None),  # nothing prepared: no generic plan to choose
    ],
)
def test_prepared_statements_are_planned_once_unless_told_otherwise(overrides, expected):
    """settings: PostgreSQL connections ask for generic plans (a startup option) where prepared statements are on."""
    code = (
        "import os, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'healthagent.settings'; "
        "from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS'].get('options')))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "PGOPTIONS"))}
    env.update({"DATABASE_URL": "postgres://someone@db.example.org:5432/healthagent", **overrides})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_the_database_urls_connection_options_are_kept_with_the_pool():
    """DATABASE_URL's query (TLS to a database on another host: sslmode, sslrootcert) still reaches the connection when
    the production pool's options are added; they once replaced it, connecting without TLS."""
    code = (
        "import os, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'healthagent.settings'; "
        "from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "PGOPTIONS"))}
    env.update(
        {
            "DATABASE_URL": "postgres://someone@db.example.org:5432/healthagent?sslmode=verify-full&sslrootcert=/ca.pem",
            "DATABASE_POOL": "1",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert options["sslmode"] == "verify-full" and options["sslrootcert"] == "/ca.pem"
    assert options["pool"]["max_size"] == 8 and options["keepalives"] == 1
