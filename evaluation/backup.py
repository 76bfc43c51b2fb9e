"""A portable, logical backup of the evaluation data: studies with their items, assignments,
ratings and every rating revision, plus what they refer to (rubrics, agent variants, the raters
and researchers by username and role, and the participants' anonymized metadata by cohort and
pseudonym). ``manage.py export_studies`` writes it, ``manage.py import_studies`` restores it.

This complements, never replaces, the physical backup (``pg_dump`` of the whole database and a
copy of ``TRAJECTORY_ROOT``; see the README): it survives schema changes, can be read by any tool,
and restores one study at a time into another installation. Passwords are never exported:
restored accounts that did not exist get an unusable password and must be reset by an admin
(their creation is audited, with every exported role). An existing account whose roles differ from
the export's stops the restore: restoring never changes who may see what.
"""

import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from evaluation.models import (
    Assignment,
    Criterion,
    Deviation,
    Dimension,
    Incident,
    Protocol,
    QualificationAttempt,
    Rating,
    RatingRevision,
    Rubric,
    Study,
    StudyItem,
    StudyRater,
)
from evaluation.raters import RATER_SETTINGS
from evaluation.services import EvaluationError
from healthagent.accounts import AccountError, user_create_with_roles
from healthagent.audit import Action, audit_record
from healthagent.cohort.store import trajectory_root
from healthagent.models import SECRET_CONFIG_KEYS, AgentVariant, Cohort, Participant
from healthagent.roles import RESULTS_ROLES, Role, user_has_role, user_roles

FORMAT_VERSION = 1
FILE_NAME = "studies.json"

DIMENSION_FIELDS = ["key", "label", "question", "scale", "scale_min", "scale_max", "anchors", "position"]
PARTICIPANT_FIELDS = [
    "age_band",
    "sex",
    "history_days",
    "minute_start_day",
    "minute_days",
    "start_weekday",
    "trajectory_path",
]
STUDY_FIELDS = [
    "mode",
    "instructions",
    "raters_per_item",
    "window_days",
    "status",
    "seed",
    "restricted",
    "show_captions",
]
STUDY_TIMES = ["created_at", "opened_at", "closed_at"]
# Newer fields (rater quality, issue 20): an import of an older file takes the model's defaults.
STUDY_QUALITY_FIELDS = [*RATER_SETTINGS, "consent_version"]
ITEM_QUALITY_FIELDS = ["kind", "reference", "tolerance", "rationale", "extra_raters"]
ASSIGNMENT_QUALITY_FIELDS = ["purpose", "attempt", "matches_reference"]
STANDING_FIELDS = ["consent_version", "background", "state", "pause_reason"]
STANDING_TIMES = ["consented_at", "declined_at", "qualified_at", "paused_at", "reinstated_at"]
ATTEMPT_FIELDS = ["number", "correct", "total", "passed"]
PROTOCOL_VALUE_FIELDS = [
    "hypotheses",
    "primary_dimension",
    "primary_test",
    "sided",
    "alpha",
    "secondary_outcomes",
    "exclusion_rules",
    "planned_items",
    "planned_raters_per_item",
    "power",
    "manifest",
    "manifest_sha256",
]
PROTOCOL_TIMES = ["locked_at"]
DEVIATION_FIELDS = ["field", "before", "after", "reason"]
ATTEMPT_TIMES = ["started_at", "finished_at"]
ITEM_FIELDS = ["position", "answer_a", "answer_b", "frozen"]
# Newer than format 1's first files, so an import reads them where present: a dropped item keeps its note.
ITEM_DROP_FIELDS = ["drop_note"]
ITEM_DROP_TIMES = ["dropped_at"]
ASSIGNMENT_FIELDS = ["state", "swapped", "draft", "skip_reason", "time_spent_s"]
ASSIGNMENT_TIMES = ["assigned_at", "completed_at"]
# What a rating holds, and each of its revisions too.
RATING_CONTENT_FIELDS = ["scores", "preference", "comment", "unsafe", "unsafe_reason", "harm", "evidence", "criteria"]
RATING_FIELDS = [*RATING_CONTENT_FIELDS, "revision"]
RATING_TIMES = ["created_at", "updated_at"]
CRITERION_FIELDS = ["position", "text", "points", "category"]
INCIDENT_FIELDS = ["reasons", "decision", "note"]
INCIDENT_TIMES = ["opened_at", "decided_at"]
REVISION_FIELDS = ["number", *RATING_CONTENT_FIELDS, "time_spent_s"]
# Fields deliberately not exported, with the reason (a test holds every other field to be exported).
NOT_EXPORTED = {
    "StudyItem": {
        "recommendation_a": "the frozen answer text (answer_a) is exported; the agent's row is not evaluation data",
        "recommendation_b": "as recommendation_a",
    },
}


def _time(value):
    return value.isoformat() if value else None


def _fields(obj, names: list[str], times: tuple[str, ...] | list[str] = ()) -> dict:
    return {**{name: getattr(obj, name) for name in names}, **{name: _time(getattr(obj, name)) for name in times}}


def _username(user) -> str | None:
    return user.get_username() if user else None


def _defaults(model, entry: dict, names: list[str]) -> dict:
    """The entry's values of ``names``, the model's defaults for those an older export lacks."""
    return {name: entry[name] if name in entry else model._meta.get_field(name).get_default() for name in names}


# --- Export ---------------------------------------------------------------------------------


def studies_export(*, output: Path, study_ids: list[int] | None = None) -> dict:
    """Write ``output/studies.json`` for the given studies (all when None); returns the counts."""
    studies = (
        Study.objects.select_related("rubric", "created_by")
        .prefetch_related("clinicians", "researchers")
        .order_by("pk")
    )
    if study_ids is not None:
        studies = studies.filter(pk__in=study_ids)
    users: dict[str, User] = {}
    participants: dict[int, Participant] = {}
    rubrics: dict[str, Rubric] = {}
    variants: dict[str, AgentVariant] = {}
    exported = []
    counts = {"studies": 0, "items": 0, "assignments": 0, "ratings": 0, "revisions": 0}
    for study in studies:
        rubrics[study.rubric.name] = study.rubric
        for user in [study.created_by, *study.clinicians.all(), *study.researchers.all(), *study.adjudicators.all()]:
            if user:
                users[user.username] = user
        items = []
        for item in study.items.select_related("participant__cohort", "variant_a", "variant_b", "dropped_by").order_by(
            "position"
        ):
            participants[item.participant_id] = item.participant
            for variant in (item.variant_a, item.variant_b):
                if variant:
                    variants[variant.name] = variant
            assignments: list[dict[str, Any]] = []
            position_of: dict[int, int] = {}  # assignment id -> its place in the item's list (incidents name it)
            # A hidden repeat comes after the rater's first assignment of the item, which it names (repeat_of).
            for assignment in item.assignments.select_related("rater").order_by("rater__username", "pk"):
                users[assignment.rater.username] = assignment.rater
                position_of[assignment.pk] = len(assignments)
                rating = Rating.objects.filter(assignment=assignment).first()
                exported_rating = None
                if rating:
                    revisions = [
                        _fields(revision, REVISION_FIELDS, ["created_at"])
                        for revision in rating.revisions.order_by("number")
                    ]
                    exported_rating = {**_fields(rating, RATING_FIELDS, RATING_TIMES), "revisions": revisions}
                    counts["ratings"] += 1
                    counts["revisions"] += len(revisions)
                assignments.append(
                    {
                        **_fields(assignment, ASSIGNMENT_FIELDS + ASSIGNMENT_QUALITY_FIELDS, ASSIGNMENT_TIMES),
                        "rater": assignment.rater.username,
                        "repeat_of": assignment.repeat_of_id is not None,
                        "rating": exported_rating,
                    }
                )
            counts["assignments"] += len(assignments)
            if item.dropped_by:
                users[item.dropped_by.username] = item.dropped_by
            incidents = []
            for incident in item.incidents.select_related("decided_by", "opened_by").order_by("opened_at", "pk"):
                if incident.decided_by:
                    users[incident.decided_by.username] = incident.decided_by
                incidents.append(
                    {
                        **_fields(incident, INCIDENT_FIELDS, INCIDENT_TIMES),
                        "decided_by": _username(incident.decided_by),
                        "opened_by": position_of.get(incident.opened_by.assignment_id) if incident.opened_by else None,
                    }
                )
            items.append(
                {
                    **_fields(item, ITEM_FIELDS + ITEM_DROP_FIELDS + ITEM_QUALITY_FIELDS, ITEM_DROP_TIMES),
                    "incidents": incidents,
                    "criteria": [
                        _fields(criterion, CRITERION_FIELDS) for criterion in item.criteria.order_by("position")
                    ],
                    "dropped_by": _username(item.dropped_by),
                    "participant": [item.participant.cohort.name, item.participant.pseudonym],
                    "variant_a": item.variant_a.name,
                    "variant_b": item.variant_b.name if item.variant_b else None,
                    "assignments": assignments,
                }
            )
        counts["items"] += len(items)
        standings = []
        for standing in study.standings.select_related("rater", "reinstated_by").order_by("rater__username"):
            users[standing.rater.username] = standing.rater
            if standing.reinstated_by:
                users[standing.reinstated_by.username] = standing.reinstated_by
            standings.append(
                {
                    **_fields(standing, STANDING_FIELDS, STANDING_TIMES),
                    "rater": standing.rater.username,
                    "reinstated_by": _username(standing.reinstated_by),
                    "attempts": [
                        _fields(attempt, ATTEMPT_FIELDS, ATTEMPT_TIMES)
                        for attempt in standing.attempts.order_by("number")
                    ],
                }
            )
        protocol = (
            Protocol.objects.filter(study=study)
            .select_related("primary_variant_a", "primary_variant_b", "locked_by")
            .first()
        )
        exported_protocol = None
        if protocol is not None:
            for user in [protocol.locked_by, *(d.created_by for d in protocol.deviations.select_related("created_by"))]:
                if user:
                    users[user.username] = user
            for variant in (protocol.primary_variant_a, protocol.primary_variant_b):
                variants[variant.name] = variant
            exported_protocol = {
                **_fields(protocol, PROTOCOL_VALUE_FIELDS, PROTOCOL_TIMES),
                "primary_variant_a": protocol.primary_variant_a.name,
                "primary_variant_b": protocol.primary_variant_b.name,
                "locked_by": _username(protocol.locked_by),
                "deviations": [
                    {
                        **_fields(deviation, DEVIATION_FIELDS, ["created_at"]),
                        "created_by": _username(deviation.created_by),
                    }
                    for deviation in protocol.deviations.select_related("created_by")
                ],
            }
        exported.append(
            {
                "name": study.name,
                **_fields(study, STUDY_FIELDS + STUDY_QUALITY_FIELDS, STUDY_TIMES),
                "raters": standings,
                "protocol": exported_protocol,
                "rubric": study.rubric.name,
                "created_by": _username(study.created_by),
                "clinicians": sorted(user.username for user in study.clinicians.all()),
                "researchers": sorted(user.username for user in study.researchers.all()),
                "adjudicators": sorted(user.username for user in study.adjudicators.all()),
                "items": items,
            }
        )
        counts["studies"] += 1

    cohorts: dict[str, dict] = {}
    for participant in sorted(participants.values(), key=lambda p: (p.cohort.name, p.pseudonym)):
        cohort = cohorts.setdefault(
            participant.cohort.name,
            {
                "name": participant.cohort.name,
                "source": participant.cohort.source,
                "description": participant.cohort.description,
                "k_anonymity": participant.cohort.k_anonymity,
                "participants": [],
            },
        )
        cohort["participants"].append({"pseudonym": participant.pseudonym, **_fields(participant, PARTICIPANT_FIELDS)})
    document = {
        "format": FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "users": [
            {
                "username": user.username,
                "email": user.email,
                "is_active": user.is_active,
                "roles": sorted(user_roles(user)),
            }
            for user in sorted(users.values(), key=lambda u: u.username)
        ],
        "rubrics": [
            {
                "name": rubric.name,
                "description": rubric.description,
                "dimensions": [
                    _fields(dimension, DIMENSION_FIELDS) for dimension in rubric.dimensions.order_by("position", "key")
                ],
            }
            for rubric in sorted(rubrics.values(), key=lambda r: r.name)
        ],
        "variants": [
            {
                "name": variant.name,
                "backend": variant.backend,
                "config": redacted(variant.config),
                "description": variant.description,
            }
            for variant in sorted(variants.values(), key=lambda v: v.name)
        ],
        "cohorts": list(cohorts.values()),
        "studies": exported,
    }
    output.mkdir(parents=True, exist_ok=True)
    temporary = output / f".{FILE_NAME}.partial"
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False))
    temporary.replace(output / FILE_NAME)  # a crash mid-write never leaves a truncated studies.json
    return counts


# --- Import ---------------------------------------------------------------------------------


def _read(source: Path) -> dict:
    path = source / FILE_NAME if source.is_dir() else source
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EvaluationError(f"cannot read {path}: {error}") from error
    if document.get("format") != FORMAT_VERSION:
        raise EvaluationError(
            f"{path} is format {document.get('format')!r}; this version reads format {FORMAT_VERSION}"
        )
    return document


def _set_times(model, pk: int, values: dict, names: list[str]) -> None:
    """auto_now(_add) fields take the exported times (a queryset update bypasses auto_now)."""
    model.objects.filter(pk=pk).update(
        **{name: parse_datetime(values[name]) if values[name] else None for name in names}
    )


def _users(document: dict) -> dict[str, User]:
    """The exported accounts: created (audited, unusable password, every exported role) when missing;
    an existing account is used only if it holds the same roles, since a restore must not change access."""
    users = {}
    for entry in document["users"]:
        roles = {Role(role) for role in entry["roles"]}
        user = User.objects.filter(username=entry["username"]).first()
        if user is None:
            try:
                user = user_create_with_roles(
                    username=entry["username"],
                    roles=roles,
                    password=None,
                    email=entry["email"],
                    is_active=entry["is_active"],
                    via="import_studies command",
                )
            except AccountError as error:
                raise EvaluationError(str(error)) from error
        elif user_roles(user) != roles:
            raise EvaluationError(
                f"the account {user.username!r} exists here with roles {sorted(map(str, user_roles(user)))}, the "
                f"export has {sorted(map(str, roles))}; change one of them and restore again"
            )
        users[user.username] = user
    return users


def redacted(config: Any) -> Any:
    """A variant's config without the secrets it may hold from before they were refused in configs (an ``api_key``
    written in): a backup is a file that travels, so it never carries one. Nested configs too."""
    if isinstance(config, dict):
        return {key: "[redacted]" if key in SECRET_CONFIG_KEYS else redacted(value) for key, value in config.items()}
    return config


def _without_redacted(config: Any) -> Any:
    if isinstance(config, dict):
        return {key: _without_redacted(value) for key, value in config.items() if value != "[redacted]"}
    return config


def _variant(entry: dict) -> AgentVariant:
    """The exported variant (created, validated and audited when missing; a redacted key is left out)."""
    variant = AgentVariant.objects.filter(name=entry["name"]).first()
    if variant is None:
        variant = AgentVariant(
            name=entry["name"],
            backend=entry["backend"],
            config=_without_redacted(entry["config"]),
            description=entry["description"],
        )
        try:
            variant.full_clean()
        except ValidationError as error:
            raise EvaluationError(f"agent variant {entry['name']!r}: {'; '.join(error.messages)}") from error
        variant.save()
        audit_record(
            actor=None, action=Action.VARIANT_CREATED, target=variant, via="import_studies command", details={}
        )
    return variant


def _rubrics(document: dict) -> dict[str, Rubric]:
    rubrics = {}
    for entry in document["rubrics"]:
        rubric, created = Rubric.objects.get_or_create(
            name=entry["name"], defaults={"description": entry["description"]}
        )
        if created:
            Dimension.objects.bulk_create([Dimension(rubric=rubric, **dimension) for dimension in entry["dimensions"]])
        elif sorted(rubric.dimensions.values_list("key", flat=True)) != sorted(d["key"] for d in entry["dimensions"]):
            raise EvaluationError(f"rubric {rubric.name!r} exists here with other dimensions")
        rubrics[rubric.name] = rubric
    return rubrics


def _check_trajectory_path(path: str, *, cohort: str) -> None:
    """A restored participant's trajectory file must be under TRAJECTORY_ROOT: an edited export must not make the
    site read (and chart for clinicians) any file the server can reach, such as ``../../etc/passwd`` or an absolute
    path."""
    if not path:
        return
    root = trajectory_root().resolve()
    if Path(path).is_absolute() or not (root / path).resolve().is_relative_to(root):
        raise EvaluationError(
            f"cohort {cohort!r}: a trajectory path outside the trajectory folder; nothing was restored"
        )


def _participants(document: dict) -> dict[tuple[str, str], Participant]:
    participants = {}
    for entry in document["cohorts"]:
        cohort, _ = Cohort.objects.get_or_create(
            name=entry["name"],
            defaults={
                "source": entry["source"],
                "description": entry["description"],
                "k_anonymity": entry["k_anonymity"],
            },
        )
        for row in entry["participants"]:
            _check_trajectory_path(row["trajectory_path"], cohort=entry["name"])
            participant, _ = Participant.objects.get_or_create(
                cohort=cohort, pseudonym=row["pseudonym"], defaults={name: row[name] for name in PARTICIPANT_FIELDS}
            )
            participants[(cohort.name, participant.pseudonym)] = participant
    return participants


def studies_import(*, source: Path) -> dict:
    """Restore an export, atomically: everything or nothing. Studies already present (same name)
    are left as they are, so restoring the same export twice adds nothing. Returns the counts."""
    document = _read(source)
    counts = {"studies": 0, "already_present": 0, "items": 0, "assignments": 0, "ratings": 0, "revisions": 0}
    with transaction.atomic():
        users, rubrics, participants = _users(document), _rubrics(document), _participants(document)
        variants = {entry["name"]: _variant(entry) for entry in document["variants"]}
        for entry in document["studies"]:
            if Study.objects.filter(name=entry["name"]).exists():
                counts["already_present"] += 1
                continue
            if blinded_out := sorted(n for n in entry["clinicians"] if user_has_role(users[n], *RESULTS_ROLES)):
                raise EvaluationError(
                    f"study {entry['name']!r} has raters who also hold a researcher or admin role "
                    f"({', '.join(blinded_out)}): they could see its results; nothing was restored"
                )
            study = Study(
                name=entry["name"],
                rubric=rubrics[entry["rubric"]],
                created_by=users.get(entry["created_by"]),
                **{name: entry[name] for name in STUDY_FIELDS},
                **_defaults(Study, entry, STUDY_QUALITY_FIELDS),
            )
            study.full_clean()
            study.save()
            _set_times(Study, study.pk, entry, STUDY_TIMES)
            study.clinicians.set([users[name] for name in entry["clinicians"]])
            study.researchers.set([users[name] for name in entry["researchers"]])
            study.adjudicators.set([users[name] for name in entry.get("adjudicators", [])])
            for item_entry in entry["items"]:
                item = StudyItem.objects.create(
                    study=study,
                    participant=participants[tuple(item_entry["participant"])],
                    variant_a=variants[item_entry["variant_a"]],
                    variant_b=variants.get(item_entry["variant_b"]),
                    dropped_by=users.get(item_entry.get("dropped_by")),
                    **{name: item_entry[name] for name in ITEM_FIELDS},
                    **{name: item_entry.get(name, "") for name in ITEM_DROP_FIELDS},
                    **_defaults(StudyItem, item_entry, ITEM_QUALITY_FIELDS),
                )
                if item_entry.get("dropped_at"):
                    _set_times(StudyItem, item.pk, item_entry, ITEM_DROP_TIMES)
                first_of: dict[str, Assignment] = {}
                ratings: list[Rating | None] = []  # by the assignment's place in the item's list
                for assignment_entry in item_entry["assignments"]:
                    ratings.append(None)
                    assignment = Assignment.objects.create(
                        study=study,
                        item=item,
                        rater=users[assignment_entry["rater"]],
                        repeat_of=first_of.get(assignment_entry["rater"])
                        if assignment_entry.get("repeat_of")
                        else None,
                        **{name: assignment_entry[name] for name in ASSIGNMENT_FIELDS},
                        **_defaults(Assignment, assignment_entry, ASSIGNMENT_QUALITY_FIELDS),
                    )
                    if assignment.purpose == Assignment.Purpose.MAIN:
                        first_of[assignment_entry["rater"]] = assignment
                    _set_times(Assignment, assignment.pk, assignment_entry, ASSIGNMENT_TIMES)
                    rating_entry = assignment_entry["rating"]
                    if rating_entry:
                        rating = Rating.objects.create(  # harm and evidence: absent from older exports
                            assignment=assignment, **_defaults(Rating, rating_entry, RATING_FIELDS)
                        )
                        _set_times(Rating, rating.pk, rating_entry, RATING_TIMES)
                        ratings[-1] = rating
                        for revision_entry in rating_entry["revisions"]:
                            revision = RatingRevision.objects.create(
                                rating=rating, **_defaults(RatingRevision, revision_entry, REVISION_FIELDS)
                            )
                            _set_times(RatingRevision, revision.pk, revision_entry, ["created_at"])
                        counts["ratings"] += 1
                        counts["revisions"] += len(rating_entry["revisions"])
                    counts["assignments"] += 1
                Criterion.objects.bulk_create(
                    [Criterion(item=item, **entry) for entry in item_entry.get("criteria", [])]
                )
                for incident_entry in item_entry.get("incidents", []):
                    opened_by = incident_entry.get("opened_by")
                    incident = Incident.objects.create(
                        study=study,
                        item=item,
                        opened_by=ratings[opened_by] if opened_by is not None else None,
                        decided_by=users.get(incident_entry["decided_by"]),
                        **{name: incident_entry[name] for name in INCIDENT_FIELDS},
                    )
                    _set_times(Incident, incident.pk, incident_entry, INCIDENT_TIMES)
                counts["items"] += 1
            for standing_entry in entry.get("raters", []):
                standing = StudyRater.objects.create(
                    study=study,
                    rater=users[standing_entry["rater"]],
                    reinstated_by=users.get(standing_entry["reinstated_by"]),
                    **{name: standing_entry[name] for name in STANDING_FIELDS},
                )
                _set_times(StudyRater, standing.pk, standing_entry, STANDING_TIMES)
                for attempt_entry in standing_entry["attempts"]:
                    attempt = QualificationAttempt.objects.create(
                        standing=standing, **{name: attempt_entry[name] for name in ATTEMPT_FIELDS}
                    )
                    _set_times(QualificationAttempt, attempt.pk, attempt_entry, ATTEMPT_TIMES)
            protocol_entry = entry.get("protocol")
            if protocol_entry:
                # Restored as it was locked: the same manifest, so the same hash as in the source's audit log.
                protocol = Protocol.objects.create(
                    study=study,
                    primary_variant_a=variants[protocol_entry["primary_variant_a"]],
                    primary_variant_b=variants[protocol_entry["primary_variant_b"]],
                    locked_by=users.get(protocol_entry["locked_by"]),
                    **{name: protocol_entry[name] for name in PROTOCOL_VALUE_FIELDS},
                )
                _set_times(Protocol, protocol.pk, protocol_entry, PROTOCOL_TIMES)
                for deviation_entry in protocol_entry["deviations"]:
                    deviation = Deviation.objects.create(
                        protocol=protocol,
                        created_by=users.get(deviation_entry["created_by"]),
                        **{name: deviation_entry[name] for name in DEVIATION_FIELDS},
                    )
                    _set_times(Deviation, deviation.pk, deviation_entry, ["created_at"])
            counts["studies"] += 1
    return counts
