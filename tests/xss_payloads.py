"""Hostile input planted everywhere users or imports can put text, and the pages that show it.

Used by tests/test_xss.py (the HTML as served) and tests/test_browser_security.py (Chromium:
no dialog opens, no planted script runs). Every payload sets ``window.__xss`` if it ever runs.
"""

import re

from django.db import transaction
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Study, StudyItem
from evaluation.services import rating_submit
from healthagent.audit import audit_record
from healthagent.models import AuditEntry, Cohort, Event, Measurement, Recommendation

SCRIPT = '<script>window.__xss="script";alert("script")</script>'
IMAGE = "<img src=x onerror=\"window.__xss='img';alert(1)\">"
SVG = "<svg onload=\"window.__xss='svg';alert(1)\"><circle r=1></circle></svg>"
LINK = "<a href=\"javascript:window.__xss='link';alert(1)\">open</a> [markdown link](javascript:window.__xss=1)"
EVERYTHING = f"Rest well. {SCRIPT} {IMAGE} {SVG} {LINK}"

# What must never appear in served HTML: a planted element, or any tag with an inline event handler
# or a javascript: URL (the site's own templates have none: no inline scripts is the house style).
LIVE_MARKUP = [
    re.compile(r"<script>window\.__xss", re.IGNORECASE),
    re.compile(r"<img\s+src=x", re.IGNORECASE),
    re.compile(r"<svg\s+onload", re.IGNORECASE),
    re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE),
    re.compile(r"<[a-z][^>]*(href|src)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE),
]


def live_markup(html: str) -> list[str]:
    return [match.group(0) for pattern in LIVE_MARKUP for match in pattern.finditer(html)]


def plant_payloads(study: Study) -> dict[str, list[str]]:
    """Put the payloads into the study's name and instructions, its answers, a rating's comment and
    unsafe reason, the cohort's name and description, and a participant's events and measurements.
    Returns, per role, the URLs of the pages that show them."""
    study.name = f"Pilot {IMAGE}"[:120]
    study.instructions = EVERYTHING
    study.save(update_fields=["name", "instructions"])
    StudyItem.objects.filter(study=study).update(answer_a=EVERYTHING)
    Recommendation.objects.filter(participant__in=study.items.values("participant")).update(text=EVERYTHING)
    item = study.items.order_by("position").first()
    participant = item.participant
    Cohort.objects.filter(pk=participant.cohort_id).update(name=f"Clinic {SVG}"[:120], description=EVERYTHING)
    Event.objects.create(
        participant=participant, kind=Event.Kind.DIAGNOSIS, name=SVG[:40], day_index=1, detail=IMAGE[:120]
    )
    Measurement.objects.create(
        participant=participant, day_index=1, name=IMAGE[:40], value=1.0, unit="<b>u", modality="lab"
    )

    clinician = study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=study, rater=clinician)
    rating_submit(
        assignment_id=assignment.pk,
        rater=clinician,
        scores={"relevance": 1, "context": 1, "safety": 1},
        comment=EVERYTHING,
        unsafe=True,
        unsafe_reason=f"Unsafe {SCRIPT}",
    )
    with transaction.atomic():
        audit_record(
            actor=None,
            via=f"script {SCRIPT}",
            action=AuditEntry.Action.STUDY_CHANGED,
            target=study,
            details={"note": EVERYTHING},
        )
    return {
        "clinician": [
            reverse("evaluation:queue"),
            reverse("evaluation:assignment", args=[assignment.pk]),
            reverse("evaluation:study_next", args=[study.pk]),
        ],
        "researcher": [
            reverse("evaluation:study_list"),
            reverse("evaluation:study_detail", args=[study.pk]),
            reverse("evaluation:study_dashboard", args=[study.pk]),
            reverse("cohort:cohort_list"),
            reverse("cohort:cohort_detail", args=[participant.cohort_id]),
            reverse("cohort:participant_detail", args=[participant.pk]),
        ],
        "admin": [reverse("audit_log"), reverse("evaluation:study_detail", args=[study.pk])],
    }
