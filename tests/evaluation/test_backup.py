"""The logical backup: export_studies → a fresh database → import_studies gives back identical
studies, items, assignments, ratings and revisions; a restore is atomic and idempotent.
(The pg_dump / pg_restore round trip: tests/test_backup_postgres.py.)"""

import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.utils import timezone

from evaluation import backup
from evaluation.assignment import assignment_next
from evaluation.models import (
    Assignment,
    Criterion,
    Deviation,
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
from evaluation.services import assignment_save_draft, assignment_skip, rating_submit
from healthagent.models import AgentVariant, Cohort
from healthagent.roles import Role, user_assign_role, user_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated_study(grounded_study):
    """Ratings (one revised), a skip and a draft; restricted, with a named researcher."""
    first, second, third = list(grounded_study.clinicians.order_by("pk"))
    assignment = assignment_next(study=grounded_study, rater=first)
    rating_submit(
        assignment_id=assignment.pk,
        rater=first,
        scores={"relevance": 2, "context": 3, "safety": 4},
        comment="first",
        time_spent_s=12,
    )
    rating_submit(
        assignment_id=assignment.pk,
        rater=first,
        scores={"relevance": 5, "context": 3, "safety": 4},
        comment="revised",
        unsafe=True,
        unsafe_reason="dose",
        time_spent_s=3,
    )
    other = assignment_next(study=grounded_study, rater=second)
    rating_submit(
        assignment_id=other.pk, rater=second, scores={"relevance": 1, "context": 1, "safety": 1}, comment="ünïcode ✓"
    )
    assignment_skip(assignment_id=assignment_next(study=grounded_study, rater=third).pk, rater=third, reason="no data")
    assignment_save_draft(
        assignment_id=assignment_next(study=grounded_study, rater=second).pk, rater=second, draft={"comment": "half"}
    )
    grounded_study.restricted = True
    grounded_study.show_captions = not Study._meta.get_field("show_captions").default
    grounded_study.save(update_fields=["restricted", "show_captions"])
    grounded_study.researchers.add(UserFactory(role=Role.RESEARCHER, username="colleague"))
    return grounded_study


def ratings_as_rows() -> list[tuple]:
    return sorted(
        (
            rating.assignment.study.name,
            rating.assignment.item.position,
            rating.assignment.item.participant.pseudonym,
            rating.assignment.rater.username,
            json.dumps(rating.scores, sort_keys=True),
            rating.comment,
            rating.unsafe,
            rating.unsafe_reason,
            rating.revision,
            rating.created_at,
            rating.updated_at,
            tuple(
                (
                    revision.number,
                    json.dumps(revision.scores, sort_keys=True),
                    revision.comment,
                    revision.time_spent_s,
                    revision.created_at,
                )
                for revision in rating.revisions.order_by("number")
            ),
        )
        for rating in Rating.objects.select_related(
            "assignment__study", "assignment__item__participant", "assignment__rater"
        )
    )


def wipe_everything_the_export_holds():
    """What a fresh database lacks: the studies, their rubrics, agent variants, cohorts and participants, and the accounts."""
    RatingRevision.objects.all().delete()
    Rating.objects.all().delete()
    Study.objects.all().delete()
    Cohort.objects.all().delete()
    User.objects.all().delete()
    Rubric.objects.all().delete()
    AgentVariant.objects.all().delete()


def exported(folder) -> dict:
    document = json.loads((folder / "studies.json").read_text())
    document.pop("exported_at")
    return document


def test_export_then_restore_into_a_fresh_database_gives_identical_ratings(rated_study, tmp_path):
    before = ratings_as_rows()
    assert len(before) == 2 and before[0][-1] != before[1][-1]
    dropped_position = rated_study.items.order_by("position").last().position
    rated_study.items.filter(position=dropped_position).update(
        dropped_at=timezone.now(), drop_note="answer never came", dropped_by=rated_study.created_by
    )
    call_command("export_studies", "--output", str(tmp_path / "first"))
    wipe_everything_the_export_holds()
    assert (
        not Rating.objects.exists()
        and not User.objects.exists()
        and not Rubric.objects.exists()
        and not AgentVariant.objects.exists()
    )

    call_command("import_studies", str(tmp_path / "first"))
    assert ratings_as_rows() == before
    study = Study.objects.get()
    assert study.show_captions == rated_study.show_captions
    assert study.restricted and list(study.researchers.values_list("username", flat=True)) == ["colleague"]
    assert study.status == "open" and study.assignments.filter(state="skipped", skip_reason="no data").count() == 1
    assert study.assignments.filter(draft={"comment": "half"}).count() == 1
    dropped = study.items.get(dropped_at__isnull=False)
    assert (dropped.position, dropped.drop_note, dropped.dropped_by.username) == (
        dropped_position,
        "answer never came",
        rated_study.created_by.username,
    )
    rater = User.objects.get(username=before[0][3])
    assert user_roles(rater) == {Role.CLINICIAN} and not rater.has_usable_password()  # passwords are never exported
    # Exporting the restored database gives the same document.
    call_command("export_studies", "--output", str(tmp_path / "second"))
    assert exported(tmp_path / "second") == exported(tmp_path / "first")


def test_restoring_twice_adds_nothing(rated_study, tmp_path, capsys):
    call_command("export_studies", "--output", str(tmp_path))
    call_command("import_studies", str(tmp_path))
    assert "0 studies, 1 already_present" in capsys.readouterr().out
    assert Study.objects.count() == 1 and Rating.objects.count() == 2


def test_a_broken_export_restores_nothing(rated_study, tmp_path):
    call_command("export_studies", "--output", str(tmp_path))
    document = json.loads((tmp_path / "studies.json").read_text())
    document["studies"][0]["items"][-1]["assignments"].append(
        {**document["studies"][0]["items"][0]["assignments"][0], "rater": "nobody"}
    )
    (tmp_path / "studies.json").write_text(json.dumps(document))
    wipe_everything_the_export_holds()
    with pytest.raises(CommandError, match=r"nothing was written.*nobody"):
        call_command("import_studies", str(tmp_path))
    assert not Study.objects.exists() and not User.objects.exists() and not Cohort.objects.exists()


def test_an_unknown_format_is_refused(tmp_path):
    (tmp_path / "studies.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CommandError, match="format 99"):
        call_command("import_studies", str(tmp_path))


# Fields the export writes as references (names, usernames, nesting) rather than as values.
EXPORTED_AS_REFERENCES = {
    Study: {"id", "name", "rubric", "created_by", "clinicians", "researchers", "adjudicators"},
    StudyItem: {"id", "study", "participant", "variant_a", "variant_b", "dropped_by"},
    Assignment: {"id", "study", "item", "rater", "repeat_of"},
    Rating: {"id", "assignment"},
    RatingRevision: {"id", "rating"},
    StudyRater: {"id", "study", "rater", "reinstated_by"},
    QualificationAttempt: {"id", "standing"},
    Protocol: {"id", "study", "primary_variant_a", "primary_variant_b", "locked_by"},
    Deviation: {"id", "protocol", "created_by"},
    Incident: {"id", "study", "item", "opened_by", "decided_by"},
    Criterion: {"id", "item"},
}
EXPORTED_VALUES = {
    Study: backup.STUDY_FIELDS + backup.STUDY_QUALITY_FIELDS + backup.STUDY_TIMES,
    StudyItem: backup.ITEM_FIELDS + backup.ITEM_DROP_FIELDS + backup.ITEM_QUALITY_FIELDS + backup.ITEM_DROP_TIMES,
    Assignment: backup.ASSIGNMENT_FIELDS + backup.ASSIGNMENT_QUALITY_FIELDS + backup.ASSIGNMENT_TIMES,
    StudyRater: backup.STANDING_FIELDS + backup.STANDING_TIMES,
    QualificationAttempt: backup.ATTEMPT_FIELDS + backup.ATTEMPT_TIMES,
    Protocol: backup.PROTOCOL_VALUE_FIELDS + backup.PROTOCOL_TIMES,
    Deviation: [*backup.DEVIATION_FIELDS, "created_at"],
    Rating: backup.RATING_FIELDS + backup.RATING_TIMES,
    RatingRevision: [*backup.REVISION_FIELDS, "created_at"],
    Incident: backup.INCIDENT_FIELDS + backup.INCIDENT_TIMES,
    Criterion: backup.CRITERION_FIELDS,
}


@pytest.mark.parametrize("model", list(EXPORTED_VALUES), ids=lambda model: model.__name__)
def test_every_field_is_exported_or_knowingly_left_out(model):
    """A field added to these models later must be exported, or listed in backup.NOT_EXPORTED with its reason."""
    fields = {field.name for field in [*model._meta.concrete_fields, *model._meta.many_to_many]}
    left_out = set(backup.NOT_EXPORTED.get(model.__name__, {}))
    accounted = set(EXPORTED_VALUES[model]) | EXPORTED_AS_REFERENCES[model] | left_out
    assert fields - accounted == set(), "neither exported nor in backup.NOT_EXPORTED"
    assert accounted - fields == set(), "exported or left out but not a field"


def test_restored_accounts_are_audited_and_keep_every_role(rated_study, tmp_path):
    from healthagent.models import AuditEntry

    UserFactory(role=Role.ADMIN, username="two_roles").groups.add(Group.objects.get_or_create(name=Role.RESEARCHER)[0])
    rated_study.researchers.add(User.objects.get(username="two_roles"))
    call_command("export_studies", "--output", str(tmp_path))
    wipe_everything_the_export_holds()
    call_command("import_studies", str(tmp_path))
    restored = User.objects.get(username="two_roles")
    assert (
        user_roles(restored) == {Role.ADMIN, Role.RESEARCHER}
        and restored.is_staff
        and not restored.has_usable_password()
    )
    entries = AuditEntry.objects.filter(action=AuditEntry.Action.USER_CREATED)
    assert sorted(entries.values_list("object_repr", flat=True)) == sorted(
        User.objects.values_list("username", flat=True)
    )
    assert {entry.actor_name for entry in entries} == {"import_studies command"}
    assert entries.get(object_repr="two_roles").details["roles"] == ["admin", "researcher"]


def test_a_restore_never_changes_the_roles_of_an_existing_account(rated_study, tmp_path):
    call_command("export_studies", "--output", str(tmp_path))
    colleague = User.objects.get(username="colleague")
    user_assign_role(user=colleague, role=Role.CLINICIAN)
    with pytest.raises(CommandError, match=r"nothing was written.*colleague.*researcher"):
        call_command("import_studies", str(tmp_path))
    assert user_roles(User.objects.get(username="colleague")) == {Role.CLINICIAN}


def test_a_locked_protocol_and_its_deviations_are_restored_with_the_same_hash(rated_study, tmp_path):
    import hashlib

    from evaluation.protocol import canonical_json, manifest_of, manifest_sha256

    owner = rated_study.created_by or UserFactory(role=Role.RESEARCHER)
    protocol = Protocol.objects.create(
        study=rated_study,
        hypotheses="Grounded is better.",
        primary_dimension="relevance",
        primary_variant_a=AgentVariant.objects.get(name="grounded agent"),
        primary_variant_b=AgentVariant.objects.get(name="LLM only"),
        planned_items=10,
        planned_raters_per_item=2,
        locked_at=timezone.now(),
        locked_by=owner,
    )
    protocol.manifest = manifest_of(protocol, locked_at=protocol.locked_at.isoformat(), locked_by=owner.username)
    protocol.manifest_sha256 = manifest_sha256(protocol.manifest)
    protocol.save()
    Deviation.objects.create(
        protocol=protocol, field="alpha", before=0.05, after=0.1, reason="small pilot", created_by=owner
    )
    digest = protocol.manifest_sha256
    call_command("export_studies", "--output", str(tmp_path / "out"))
    Deviation.objects.all().delete()
    wipe_everything_the_export_holds()
    call_command("import_studies", str(tmp_path / "out"))
    restored = Protocol.objects.get()
    assert restored.manifest_sha256 == digest == hashlib.sha256(canonical_json(restored.manifest)).hexdigest()
    assert restored.locked_by.username == owner.username and restored.primary_variant_b.name == "LLM only"
    assert list(restored.deviations.values_list("field", "before", "after", "reason")) == [
        ("alpha", 0.05, 0.1, "small pilot")
    ]


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd", "cohort-1/../../outside.parquet"])
def test_a_restore_with_a_trajectory_path_outside_the_folder_is_refused(rated_study, tmp_path, path):
    call_command("export_studies", "--output", str(tmp_path))
    document = json.loads((tmp_path / "studies.json").read_text())
    document["cohorts"][0]["participants"][0]["trajectory_path"] = path
    (tmp_path / "studies.json").write_text(json.dumps(document))
    wipe_everything_the_export_holds()
    with pytest.raises(CommandError, match=r"nothing was written.*trajectory path outside the trajectory folder"):
        call_command("import_studies", str(tmp_path))
    assert not Cohort.objects.exists() and not Study.objects.exists()
