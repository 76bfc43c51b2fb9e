"""Seed the load-test database: a synthetic cohort, grounded answers, clinicians and open studies.

Run as ``python -m loadtest.seed PLAN.json OUT.json`` inside the stack's environment (it is a
separate process so that Django is set up against the stack's database, never this one's).
Most clinicians get a ready session (a login costs ~0.3 s of CPU for the password hash, so
1,860 logins cannot all happen in the test's ramp on two cores); the client logs in a few
through the login form to measure that endpoint.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import django

from loadtest.stack import ROOT


def seed_stack(plan: dict, *, environment: dict, work: Path, timeout_s: float | None = 1800) -> dict:
    """Seed the stack whose environment is ``environment`` in a process of its own (its plan and answer kept in
    ``work``) and return what :func:`seed` answered."""
    plan_path, seeded_path = work / "plan.json", work / "seeded.json"
    plan_path.write_text(json.dumps(plan))
    subprocess.run(
        [sys.executable, "-m", "loadtest.seed", str(plan_path), str(seeded_path)],
        env=environment,
        cwd=ROOT,
        check=True,
        timeout=timeout_s,
    )
    return json.loads(seeded_path.read_text())


def seed(plan: dict) -> dict:
    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from evaluation.models import Rubric
    from evaluation.services import StudySpec, study_create, study_set_status
    from healthagent.agent.generate import cohort_generate
    from healthagent.cohort.importers.synthetic import synthetic_participants
    from healthagent.cohort.importing import cohort_import
    from healthagent.middleware import SessionIdleMiddleware
    from healthagent.models import AgentVariant
    from healthagent.roles import Role

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    participants, report = synthetic_participants(
        participants=plan["participants"], days=plan["days"], seed=plan["seed"], history_days=plan["days"] + 30
    )
    cohort = cohort_import(
        name="Load cohort",
        source="synthetic",
        participants=participants,
        source_report=report,
        k=1,
        allow_k_below_minimum=True,
    ).cohort
    grounded = AgentVariant.objects.get(name="grounded agent")
    variants = [grounded] + [
        AgentVariant.objects.create(name=f"load variant {number}", backend=grounded.backend, config=grounded.config)
        for number in range(2, plan["variants"] + 1)
    ]
    cohort_generate(cohort=cohort, variants=variants)

    encoded_password = make_password(plan["password"])  # one hash for all: hashing 1,860 times would take minutes
    clinician_group = Group.objects.get(name=Role.CLINICIAN.value)
    User.objects.bulk_create(
        [
            User(username=f"load-clinician-{number:04d}", password=encoded_password)
            for number in range(plan["clinicians"])
        ],
        batch_size=1000,
    )
    clinicians = list(User.objects.filter(username__startswith="load-clinician-").order_by("username"))
    clinician_group.user_set.add(*clinicians)
    researcher = User.objects.create(username="load-researcher", password=encoded_password)
    Group.objects.get(name=Role.RESEARCHER.value).user_set.add(researcher)

    sessions = []
    for clinician in clinicians:
        session = SessionStore()
        session[SESSION_KEY], session[BACKEND_SESSION_KEY] = (
            str(clinician.pk),
            "healthagent.accounts.PasswordBackend",
        )
        session[HASH_SESSION_KEY] = clinician.get_session_auth_hash()
        session[SessionIdleMiddleware.RENEWED_AT] = time.time()  # as a log-in leaves it (session_renewed_at_login)
        session.create()
        sessions.append(session.session_key)

    rubric = Rubric.objects.get(name__endswith="(1-5)")
    studies = {}
    for name, size in plan["studies"].items():
        enrolled = clinicians[:size]
        spec = StudySpec(
            name=f"Load {name}",
            mode="absolute",
            rubric=rubric,
            cohort=cohort,
            variants=variants,
            raters_per_item=len(enrolled),
            clinicians=enrolled,
            window_days=plan["days"],
        )
        studies[name] = study_set_status(study=study_create(spec=spec, user=researcher), status="open").pk
    from modeling.models import Job
    from modeling.tasks import run_job

    for job in Job.objects.filter(kind="study_charts", state=Job.State.QUEUED):
        run_job.apply(kwargs={"job_id": job.pk})  # what the quick worker does when a study opens: its charts, built
    return {
        "studies": studies,
        "clinicians": [
            {"username": clinician.username, "session": key}
            for clinician, key in zip(clinicians, sessions, strict=True)
        ],
        "dimensions": {dimension.key: list(dimension.points) for dimension in rubric.dimensions.all()},
        "items_per_study": plan["participants"] * plan["variants"],
        "seed_s": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    plan_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    out_path.write_text(json.dumps(seed(json.loads(plan_path.read_text()))))
