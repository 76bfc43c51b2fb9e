"""Server time and query count of the clinician's rating page (goal: at most 15 queries)."""

import io
import os
import statistics
import tempfile
import time


def run(repeats: int = 30) -> dict:
    os.environ["HEALTHAGENT_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-rating-")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from evaluation.assignment import assignment_next
    from evaluation.models import Study
    from healthagent.models import Recommendation

    setup_test_environment()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    call_command("demo_setup", verbosity=0, stdout=io.StringIO())
    Recommendation.objects.filter(status="succeeded").exists()
    from django.contrib.auth.models import User

    clinician = User.objects.get(username="clinician")
    results = {}
    for study in Study.objects.order_by("name"):
        if study.mode == "pairwise":  # the demo's language-model answers are not generated here
            continue
        assignment = assignment_next(study=study, rater=clinician)
        client = Client()
        client.force_login(clinician)
        url = f"/evaluation/items/{assignment.pk}/"
        client.get(url)
        timings, sizes = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            sizes.append(len(response.content))
        results[study.mode] = {
            "median_ms": round(statistics.median(timings), 1),
            "p95_ms": round(sorted(timings)[int(0.95 * repeats) - 1], 1),
            "queries": len(queries),
            "goal_queries": 15,
            "html_bytes": sizes[-1],
        }
    return {"rating_page": results, "repeats": repeats}
