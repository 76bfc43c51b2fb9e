"""The safety triage lane: a possible harm of an answer handled as an incident, not only as a score.

A rating that says severe harm, likely harm or unsafe (:data:`TRIGGERS`) opens an incident on its item, unless the
item has one open or one found harmful. The study's adjudicators (clinicians named on the study, who do not rate in
it) see the item with every rater's ratings, unblinded and audited, and decide: confirmed harmful, not harmful, or
needs change, with a note. Until then the item's variants carry an "unresolved safety incident" banner on the
dashboard and a mark in the exports; every incident stays in the study's incident log, which exports for an ethics
board. Opening notifies the owner and the adjudicators, in the site and by email when email is configured.
"""

import csv
import io
import json
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from evaluation.errors import EvaluationError
from evaluation.evidence import window_text
from evaluation.models import Assignment, Incident, Rating, Study
from evaluation.selectors import studies_visible_to, study_changeable_by
from healthagent.audit import Action, audit_record
from healthagent.notifications import notifications_resolve, notify
from healthagent.roles import (
    ADJUDICATOR_GROUP,
    Role,
    adjudicator_flag_required,
    user_has_role,
    user_is_adjudicator,
)
from healthagent.spreadsheet import neutralize
from healthagent.webhooks import webhook_emit

logger = logging.getLogger(__name__)

# What opens an incident, in the words the incident log uses.
TRIGGERS = {
    "severe": "rated severe harm",
    "likely": "rated likely harm (moderate harm, high likelihood)",
    "unsafe": "flagged unsafe",
}
# An item with an incident in one of these states opens no other: it waits, or it was found harmful already.
BLOCKING = (Incident.Decision.OPEN, Incident.Decision.CONFIRMED, Incident.Decision.NEEDS_CHANGE)
MAX_NOTE = 5000


def harm_reasons(*, harm: dict[str, str], unsafe: bool) -> list[str]:
    """The triggers a rating meets (keys of TRIGGERS), in their order."""
    extent, likelihood = harm.get("extent"), harm.get("likelihood")
    reasons = []
    if extent == "severe":
        reasons.append("severe")
    elif extent == "moderate" and likelihood == "high":
        reasons.append("likely")
    if unsafe:
        reasons.append("unsafe")
    return reasons


def incident_url(incident: Incident) -> str:
    return reverse("evaluation:incident", args=[incident.pk])


# Ratings of these purposes open incidents: the results (main queue, its hidden repeats) and the gold items, which
# are the agent's answers too. Training and qualification items may be flawed on purpose, to teach and to test.
TRIAGED_PURPOSES = (Assignment.Purpose.MAIN, Assignment.Purpose.REPEAT, Assignment.Purpose.GOLD)


def incident_open_for(*, rating: Rating, assignment: Assignment, before: dict[str, Any] | None) -> Incident | None:
    """Called by rating_submit inside its transaction: open an incident if the rating meets a trigger the previous
    version (``before``: its harm and unsafe flag; None for a first rating) did not meet, and the item has none open
    or found harmful. Never costs the rating: a concurrent opening for the same item (another rater at the same
    moment) keeps theirs, and any other failure is logged, in a savepoint the rating's transaction survives."""
    reasons = harm_reasons(harm=rating.harm, unsafe=rating.unsafe)
    if not reasons or assignment.purpose not in TRIAGED_PURPOSES:
        return None
    if before is not None and set(reasons) <= set(harm_reasons(harm=before["harm"], unsafe=before["unsafe"])):
        return None  # a revision that changed something else (a comment) is no new report of harm
    try:
        with transaction.atomic():
            return _incident_open(rating=rating, assignment=assignment, reasons=reasons)
    except IntegrityError:
        return None  # another rater's rating opened it first
    except Exception:
        logger.exception("no safety incident could be opened for rating #%s", rating.pk)
        return None


def _incident_open(*, rating: Rating, assignment: Assignment, reasons: list[str]) -> Incident | None:
    if Incident.objects.filter(item_id=assignment.item_id, decision__in=BLOCKING).exists():
        return None
    incident = Incident.objects.create(
        study_id=assignment.study_id, item_id=assignment.item_id, opened_by=rating, reasons=reasons
    )
    study = assignment.study
    audit_record(
        actor=None,
        via="safety triage",
        action=Action.INCIDENT_OPENED,
        target=incident,
        details={"study": study.pk, "item": assignment.item_id, "reasons": reasons},
    )
    webhook_emit(
        event_type="incident.raised",
        data={"incident_id": incident.pk, "item_id": assignment.item_id, "reasons": reasons},
        study_id=study.pk,
    )
    text = f"Safety incident #{incident.pk} in the study {study.name!r} waits for a decision"
    recipients = [*study.adjudicators.all(), *([study.created_by] if study.created_by else [])]
    notify(
        users=recipients,
        text=text,
        url=incident_url(incident),
        subject=f"[Safety incident] {study.name}",
        body=f"{text}: an answer was {', '.join(TRIGGERS[r] for r in reasons)} by a rater.\n\n"
        "Adjudicators decide it from the triage queue of the site.\n",
    )
    return incident


# --- Who sees what ------------------------------------------------------------------------------------------------


def _flag_holds(user: User) -> bool:
    """With single sign-on carrying the adjudicator flag, a clinician who lost it adjudicates nothing more, whatever
    studies still name them."""
    return not adjudicator_flag_required() or user_is_adjudicator(user)


def is_adjudicator(*, user: User, study: Study) -> bool:
    return _flag_holds(user) and study.adjudicators.filter(pk=user.pk).exists()


def triage_queue(*, user: User, decided_limit: int = 200) -> tuple[list[Incident], list[Incident]]:
    """The incidents of the studies ``user`` adjudicates: every open one, oldest first; then the latest decided ones,
    newest first."""
    if not _flag_holds(user):
        return [], []
    incidents = Incident.objects.filter(study__adjudicators=user).select_related("study", "item", "decided_by")
    return (
        list(incidents.filter(decision="").order_by("opened_at", "pk")),
        list(incidents.exclude(decision="").order_by("-decided_at", "-pk")[:decided_limit]),
    )


def access_incident(*, user: User, incident_id: int) -> tuple[Incident, bool]:
    """The incident and whether ``user`` may decide it: its study's adjudicators may; researchers who see the study
    may read it. Anyone else gets 404 (an incident one may not see is not confirmed to exist)."""
    incident = (
        Incident.objects.select_related(
            "study", "item__participant", "item__variant_a", "item__variant_b", "decided_by"
        )
        .filter(pk=incident_id)
        .first()
    )
    if incident is None:
        raise Http404("no such incident")
    if user_has_role(user, Role.CLINICIAN) and is_adjudicator(user=user, study=incident.study):
        return incident, True
    if studies_visible_to(user=user).filter(pk=incident.study_id).exists():
        return incident, False
    raise Http404("no such incident")


def incident_ratings(incident: Incident) -> list[dict[str, Any]]:
    """Every rating of the incident's item, with the rater: for adjudicators and researchers only."""
    ratings = (
        Rating.objects.filter(assignment__item=incident.item)
        .select_related("assignment__rater")
        .order_by("created_at", "pk")
    )
    labels = dict(incident.study.rubric.dimensions.values_list("key", "label"))
    return [
        {
            "rating": rating.pk,
            "rater": rating.assignment.rater.get_username(),
            "purpose": rating.assignment.purpose,
            "scores": rating.scores,
            "preference": rating.preference,
            "harm": rating.harm,
            "unsafe": rating.unsafe,
            "unsafe_reason": rating.unsafe_reason,
            "comment": rating.comment,
            "evidence": rating.evidence,
            "evidence_text": [window_text(window, labels) for window in rating.evidence],
            "triggers": [TRIGGERS[r] for r in harm_reasons(harm=rating.harm, unsafe=rating.unsafe)],
            "revision": rating.revision,
            "rated_at": rating.updated_at,
        }
        for rating in ratings
    ]


def incident_viewed(*, incident: Incident, user: User) -> None:
    """Audit that ``user`` saw the raters' ratings of the incident (the lane's unblinding)."""
    with transaction.atomic():
        audit_record(actor=user, action=Action.INCIDENT_VIEWED, target=incident, details={"study": incident.study_id})


def incident_decide(*, incident_id: int, user: User, decision: str, note: str) -> Incident:
    """An adjudicator's decision with a note (audited); a decided incident may be decided again, also audited."""
    note = (note or "").strip()
    if decision not in {choice for choice in Incident.Decision.values if choice}:
        raise EvaluationError("choose a decision: confirmed harmful, not harmful or needs change")
    if not note:
        raise EvaluationError("write a note: what you found, and what should happen")
    if len(note) > MAX_NOTE:
        raise EvaluationError(f"the note is longer than {MAX_NOTE:,} characters")
    with transaction.atomic():
        # of=self: the study row stays unlocked (new assignments and incidents point at it).
        incident = (
            Incident.objects.select_for_update(of=("self",)).select_related("study").filter(pk=incident_id).first()
        )
        if incident is None:
            raise Http404("no such incident")
        if not (user_has_role(user, Role.CLINICIAN) and is_adjudicator(user=user, study=incident.study)):
            raise PermissionDenied("only the study's adjudicators decide its incidents")
        before = incident.decision
        incident.decision, incident.note, incident.decided_by, incident.decided_at = (
            decision,
            note,
            user,
            timezone.now(),
        )
        incident.save(update_fields=["decision", "note", "decided_by", "decided_at"])
        notifications_resolve(url=incident_url(incident))  # "waits for a decision" is no longer true
        audit_record(
            actor=user,
            action=Action.INCIDENT_DECIDED,
            target=incident,
            details={"study": incident.study_id, "decision": decision, "before": before, "note": note},
        )
    return incident


def adjudicator_choices(study: Study) -> QuerySet[User]:
    """Whom the study's page offers as adjudicators: active clinicians who do not rate it (and, when single sign-on
    carries the adjudicator flag, only flagged ones)."""
    choices = User.objects.filter(groups__name=Role.CLINICIAN, is_active=True).exclude(
        pk__in=study.clinicians.values("pk")
    )
    if adjudicator_flag_required():
        choices = choices.filter(groups__name=ADJUDICATOR_GROUP)
    return choices.order_by("username")


def study_adjudicators_set(*, study: Study, users: list[User], by: User) -> None:
    """Name the study's adjudicators (owner or admin): clinicians who do not rate in the study, since they see every
    rater's ratings of an incident's item."""
    if not study_changeable_by(study=study, user=by):
        raise PermissionDenied("only the study's owner or an admin names its adjudicators")
    not_clinicians = [user.get_username() for user in users if not user_has_role(user, Role.CLINICIAN)]
    if not_clinicians:
        raise EvaluationError(f"adjudicators are clinicians: {', '.join(not_clinicians)} is not")
    if adjudicator_flag_required() and (unflagged := [u.get_username() for u in users if not user_is_adjudicator(u)]):
        raise EvaluationError(
            f"{', '.join(unflagged)} is not a safety adjudicator at {settings.OIDC_PROVIDER_NAME}: the flag comes "
            "from there"
        )
    raters = set(study.clinicians.values_list("pk", flat=True)) | set(
        Assignment.objects.filter(study=study).values_list("rater_id", flat=True)
    )
    rating = sorted(user.get_username() for user in users if user.pk in raters)
    if rating:
        raise EvaluationError(
            f"{', '.join(rating)} rates in this study: an adjudicator sees every rater's ratings, so choose clinicians "
            "who do not rate it"
        )
    with transaction.atomic():
        before = sorted(study.adjudicators.values_list("username", flat=True))
        study.adjudicators.set(users)
        audit_record(
            actor=by,
            action=Action.STUDY_ADJUDICATORS_SET,
            target=study,
            details={"before": before, "after": sorted(user.get_username() for user in users)},
        )


# --- The study's incidents: banner, export marks, log -------------------------------------------------------------


def item_variants(incident: Incident) -> list[str]:
    """The variants an incident is about: the rated one, or both of a pairwise item (whose rater flagged the pair)."""
    item = incident.item
    return [item.variant_a.name, *([item.variant_b.name] if item.variant_b is not None else [])]


def unresolved_by_variant(study: Study) -> dict[str, int]:
    """Variant name -> open incidents of its answers (the dashboard's banner)."""
    counts: dict[str, int] = {}
    for incident in Incident.objects.filter(study=study, decision="").select_related(
        "item__variant_a", "item__variant_b"
    ):
        for name in item_variants(incident):
            counts[name] = counts.get(name, 0) + 1
    return counts


def item_incident_states(study: Study) -> dict[int, str]:
    """Item id -> the state of its latest incident ("open" or the decision): the exports' safety_incident column."""
    states: dict[int, str] = {}
    for item_id, decision in (
        Incident.objects.filter(study=study).order_by("opened_at", "pk").values_list("item_id", "decision")
    ):
        states[item_id] = decision or "open"
    return states


def incident_log(study: Study) -> list[dict[str, Any]]:
    """Every incident of the study with its item, variants, ratings and decision: for an ethics board."""
    incidents = Incident.objects.filter(study=study).select_related(
        "item__participant", "item__variant_a", "item__variant_b", "decided_by"
    )
    return [
        {
            "incident": incident.pk,
            "study": study.name,
            "item_id": incident.item_id,
            "participant": incident.item.participant.pseudonym,
            "variants": item_variants(incident),
            "opened_at": incident.opened_at.isoformat(),
            "reasons": [TRIGGERS[r] for r in incident.reasons],
            "ratings": [{**entry, "rated_at": entry["rated_at"].isoformat()} for entry in incident_ratings(incident)],
            "decision": incident.decision or "open",
            "note": incident.note,
            "decided_by": incident.decided_by.get_username() if incident.decided_by else None,
            "decided_at": incident.decided_at.isoformat() if incident.decided_at else None,
        }
        for incident in incidents.order_by("opened_at", "pk")
    ]


def incident_log_bytes(study: Study, fmt: str) -> bytes:
    """The incident log as JSON (nested, exact) or CSV (one row per incident and rating; text that a spreadsheet
    would run as a formula is neutralized: healthagent.spreadsheet)."""
    log = incident_log(study)
    if fmt == "json":
        return json.dumps(log, indent=1, ensure_ascii=False).encode()
    if fmt != "csv":
        raise ValueError(f"unknown incident log format {fmt!r}")
    columns = [
        "incident", "study", "item_id", "participant", "variants", "opened_at", "reasons", "decision", "note",
        "decided_by", "decided_at", "rater", "harm_extent", "harm_likelihood", "unsafe", "unsafe_reason", "comment",
        "evidence",
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for entry in log:
        head = {
            **{key: entry[key] for key in columns[:11] if key in entry},
            "variants": " | ".join(entry["variants"]),
            "reasons": "; ".join(entry["reasons"]),
        }
        for rating in entry["ratings"] or [{}]:
            row = {
                **head,
                "rater": rating.get("rater", ""),
                "harm_extent": (rating.get("harm") or {}).get("extent", ""),
                "harm_likelihood": (rating.get("harm") or {}).get("likelihood", ""),
                "unsafe": rating.get("unsafe", ""),
                "unsafe_reason": rating.get("unsafe_reason", ""),
                "comment": rating.get("comment", ""),
                "evidence": json.dumps(rating.get("evidence") or [], ensure_ascii=False),
            }
            writer.writerow({key: neutralize(value) for key, value in row.items()})  # free text: no formulas
    return buffer.getvalue().encode()
