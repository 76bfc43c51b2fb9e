"""Pre-registration: the protocol, its lock (manifest hash in the audit log), deviations, and the power analysis
checked against the closed form of a paired t-test."""

import hashlib

import pytest
from django.urls import reverse

from evaluation import stats
from evaluation.models import Deviation, Study
from evaluation.protocol import (
    PowerInputs,
    ProtocolError,
    canonical_json,
    closed_form_power,
    power_curve,
    protocol_lock,
    protocol_save,
    simulated_ratings,
)
from healthagent.models import AgentVariant, AuditEntry
from healthagent.roles import Role
from tests.evaluation.test_assignment import build_study
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def values(**overrides):
    return {
        "hypotheses": "The grounded agent's answers are more relevant than the language model's alone.",
        "primary_dimension": "relevance",
        "primary_variant_a": AgentVariant.objects.get(name="grounded agent"),
        "primary_variant_b": AgentVariant.objects.get(name="LLM only"),
        "primary_test": "wilcoxon",
        "sided": "two-sided",
        "alpha": 0.05,
        "secondary_outcomes": "Context awareness and safety.",
        "exclusion_rules": ["paused", "fast"],
        "planned_items": 40,
        "planned_raters_per_item": 3,
        **overrides,
    }


@pytest.fixture
def draft_study():
    study = build_study(items=6, raters=2, k=1, mode="pairwise")
    Study.objects.filter(pk=study.pk).update(status="draft")
    study.refresh_from_db()
    return study


def test_locking_hashes_the_manifest_into_the_audit_log_and_changes_become_deviations(draft_study):
    owner = UserFactory(role=Role.RESEARCHER)
    with pytest.raises(ProtocolError, match="write the protocol first"):
        protocol_lock(study=draft_study, user=owner)
    with pytest.raises(ProtocolError, match="rubric's dimensions"):
        protocol_save(study=draft_study, values=values(primary_dimension="nope"), user=owner)
    protocol_save(study=draft_study, values=values(), user=owner)
    protocol_save(study=draft_study, values=values(alpha=0.01), user=owner)  # before the lock: no deviation
    protocol = protocol_lock(study=draft_study, user=owner)
    logged = AuditEntry.objects.get(action="protocol.locked").details["sha256"]
    assert logged == protocol.manifest_sha256 == hashlib.sha256(canonical_json(protocol.manifest)).hexdigest()
    assert protocol.manifest["primary"] == {
        "dimension": "relevance",
        "statistic": "share of the first variant's wins among decided judgements (binomial test)",  # pairwise
        "variants": ["grounded agent", "LLM only"],
        "test": "binomial",
        "sided": "two-sided",
        "alpha": 0.01,
    }
    with pytest.raises(ProtocolError, match="locked already"):
        protocol_lock(study=draft_study, user=owner)
    with pytest.raises(ProtocolError, match="deviation; say why"):
        protocol_save(study=draft_study, values=values(alpha=0.01, primary_dimension="safety"), user=owner)
    assert not Deviation.objects.exists()
    protocol_save(
        study=draft_study,
        values=values(alpha=0.01, primary_dimension="safety"),
        user=owner,
        reason="Ethics board asked",
    )
    deviation = Deviation.objects.get()
    assert (deviation.field, deviation.before, deviation.after, deviation.reason) == (
        "primary_dimension",
        "relevance",
        "safety",
        "Ethics board asked",
    )
    protocol.refresh_from_db()
    assert protocol.manifest["primary"]["dimension"] == "relevance"  # the manifest stays as locked
    assert AuditEntry.objects.filter(action="protocol.deviation", details__reason="Ethics board asked").exists()


@pytest.mark.parametrize("sided", ["two-sided", "greater", "less"])
def test_simulated_power_matches_the_closed_form_of_the_paired_t_test(sided):
    inputs = PowerInputs(sd=1.0, difference=0.4, icc=0.5, test="paired_t", sided=sided, points=None)
    rows = power_curve(inputs, items=[20, 40], raters=[1, 3], simulations=300, seed=3)
    for row in rows:
        expected = closed_form_power(inputs, items=row["items"], raters=row["raters"])
        assert abs(row["power"] - expected) < 4 * max(row["power_se"], 0.01), (row, expected)
    by_raters = {(row["items"], row["raters"]): row["power"] for row in rows}
    assert by_raters[(40, 3)] > by_raters[(20, 3)] and by_raters[(40, 3)] > by_raters[(40, 1)]


def test_the_simulation_is_analysed_by_the_dashboards_own_test():
    import numpy as np

    frame = simulated_ratings(PowerInputs(difference=0.5), items=30, raters=2, rng=np.random.default_rng(0))
    result = stats.paired_comparison(frame, "A", "B")
    assert result["n_pairs"] == 30 and result["mean_difference"] > 0
    # The same frame through the dashboard's comparison section gives the same p-value.
    from evaluation.dashboard import dashboard_from_frames

    per_rating = frame.rename(columns={"variant": "variant_a"}).assign(
        rating=range(len(frame)),
        scores=[{"relevance": int(score)} for score in frame["score"]],
        variant_b=None,
        preference="",
        time_spent_s=30.0,
        unsafe=False,
        unsafe_reason="",
        comment="",
        swapped=False,
    )
    dashboard = dashboard_from_frames(
        mode="absolute", per_rating=per_rating, points={"relevance": [1, 2, 3, 4, 5]}, ratings_needed=len(frame)
    )
    [comparison] = dashboard["comparisons"]
    assert comparison["p_value"] == pytest.approx(result["p_value"])


def test_the_protocol_page_computes_the_power_saves_and_locks(client, draft_study):
    owner = UserFactory(role=Role.RESEARCHER)
    Study.objects.filter(pk=draft_study.pk).update(created_by=owner)
    client.force_login(owner)
    url = reverse("evaluation:study_protocol", args=[draft_study.pk])
    assert "Compute the power analysis" in client.get(url).content.decode()
    form = {
        "hypotheses": "Grounded answers are more relevant.",
        "primary_dimension": "relevance",
        "primary_variant_a": AgentVariant.objects.get(name="grounded agent").pk,
        "primary_variant_b": AgentVariant.objects.get(name="LLM only").pk,
        "primary_test": "wilcoxon",
        "sided": "two-sided",
        "alpha": "0.05",
        "planned_items": "10",
        "planned_raters_per_item": "2",
        "power_sd": "1.0",
        "power_difference": "0.5",
        "power_icc": "0.5",
        "power_target": "0.8",
    }
    assert client.post(url, {**form, "action": "power"}).status_code == 302
    page = client.get(url).content.decode()
    assert 'data-figure="power_figure"' in page and "data-power-choice" in page
    protocol = draft_study.protocol
    assert protocol.planned_items == protocol.power["choice"]["items"] > 10
    client.post(url, {"action": "lock"})
    protocol.refresh_from_db()
    manifest = client.get(reverse("evaluation:study_protocol_manifest", args=[draft_study.pk])).content
    assert hashlib.sha256(manifest).hexdigest() == protocol.manifest_sha256
    other = UserFactory(role=Role.RESEARCHER)
    client.force_login(other)
    assert client.post(url, {**form, "action": "save"}).status_code == 403


def test_exports_carry_the_manifest_its_hash_and_the_deviations_and_the_dashboard_leads_with_the_primary(client):
    import io
    import json
    import zipfile

    import pyarrow.parquet as pq

    from evaluation.assignment import assignment_next
    from evaluation.services import rating_submit

    study = build_study(items=12, raters=2, k=2)
    Study.objects.filter(pk=study.pk).update(status="draft")
    study.refresh_from_db()
    # Absolute study of one variant per item: give half the items the other variant, so both are compared.
    grounded, llm = AgentVariant.objects.get(name="grounded agent"), AgentVariant.objects.get(name="LLM only")
    items = list(study.items.order_by("position"))
    for item in items[6:]:
        item.variant_a = llm
        item.participant = items[items.index(item) - 6].participant
        item.save()
    owner = UserFactory(role=Role.RESEARCHER)
    protocol_save(study=study, values=values(exclusion_rules=[]), user=owner)
    protocol = protocol_lock(study=study, user=owner)
    protocol_save(study=study, values=values(exclusion_rules=[], alpha=0.1), user=owner, reason="Pilot was small")
    Study.objects.filter(pk=study.pk).update(status="open")
    study.refresh_from_db()
    for rater in study.clinicians.all():
        while (assignment := assignment_next(study=study, rater=rater)) is not None:
            score = 5 if assignment.item.variant_a == grounded else 2
            rating_submit(
                assignment_id=assignment.pk, rater=rater, scores={"relevance": score, "context": 3, "safety": 4}
            )
    client.force_login(UserFactory(role=Role.RESEARCHER))
    logged = AuditEntry.objects.get(action="protocol.locked").details["sha256"]

    bundle = zipfile.ZipFile(io.BytesIO(client.get(reverse("evaluation:study_export", args=[study.pk, "zip"])).content))
    assert hashlib.sha256(bundle.read("protocol.json")).hexdigest() == logged == protocol.manifest_sha256
    deviations = json.loads(bundle.read("deviations.json"))
    assert [(d["field"], d["before"], d["after"], d["reason"]) for d in deviations] == [
        ("alpha", 0.05, 0.1, "Pilot was small")
    ]
    assert f",{logged},1" in bundle.read("ratings.csv").decode().splitlines()[1]

    parquet = pq.read_table(
        io.BytesIO(client.get(reverse("evaluation:study_export", args=[study.pk, "parquet"])).content)
    )
    assert hashlib.sha256(parquet.schema.metadata[b"protocol.json"]).hexdigest() == logged

    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    primary = page.index("Pre-registered primary analysis")
    assert primary < page.index("Completion") and "Everything below is exploratory" in page
    assert "mean difference +3.00 points over 6 participants" in page and "Pilot was small" in page


def test_the_admin_refuses_to_change_what_a_locked_protocol_fixed(client, draft_study):
    from healthagent.models import AuditEntry as Entry

    owner = UserFactory(role=Role.RESEARCHER)
    protocol_save(study=draft_study, values=values(), user=owner)
    protocol_lock(study=draft_study, user=owner)
    admin = UserFactory(role=Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    url = reverse("admin:evaluation_study_change", args=[draft_study.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    posted = {name: value for name, value in form.initial.items() if value is not None}
    posted.update(
        {
            "clinicians": [user.pk for user in draft_study.clinicians.all()],
            "researchers": [],
            "background_fields": "[]",
            "reference": "{}",
            "seed": draft_study.seed + 1,
            "rubric": draft_study.rubric_id,
        }
    )
    response = client.post(url, posted)
    assert "cannot change" in response.content.decode()
    draft_study.refresh_from_db()
    assert draft_study.seed == 3 and not Entry.objects.filter(action="study.changed").exists()
