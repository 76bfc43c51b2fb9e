"""Server time and query count of each role's start page, on a throw-away database."""

import statistics
import tempfile
import time


def run(repeats: int = 50) -> dict:
    import os

    os.environ["HEALTHAGENT_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-site-")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from healthagent.accounts import demo_user_ensure
    from healthagent.roles import Role

    setup_test_environment()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # pages are measured as production serves them
    pages = {
        Role.CLINICIAN: "/evaluation/queue/",
        Role.RESEARCHER: "/evaluation/studies/",
        Role.ADMIN: "/modeling/jobs/",
    }
    results = {}
    for role, url in pages.items():
        client = Client()
        client.force_login(demo_user_ensure(username=f"bench-{role}", role=role, password="bench-password-1"))
        client.get(url)  # warm caches and templates
        timings_ms = []
        for _ in range(repeats):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            timings_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        results[str(role)] = {
            "url": url,
            "median_ms": round(statistics.median(timings_ms), 2),
            "p95_ms": round(sorted(timings_ms)[int(0.95 * len(timings_ms)) - 1], 2),
            "queries": len(queries),
        }
    return {"start_pages": results, "repeats": repeats}
