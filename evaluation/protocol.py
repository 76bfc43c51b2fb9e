"""Pre-registration: a study's analysis fixed before its data comes in.

- :func:`protocol_save` writes the protocol of a draft study; once locked, a change of a locked field is refused
  unless the owner gives a reason, and is then recorded as a :class:`~evaluation.models.Deviation` (audited).
- :func:`protocol_lock` writes the manifest (canonical JSON: sorted keys, no spaces) and puts its SHA-256 in the
  audit log; the manifest and the hash ship with the study's exports and stand on its dashboard.
- :func:`power_curve` simulates studies of several sizes and runs on each the very test the dashboard runs
  (``stats.paired_comparison``) to estimate the power of the primary comparison, and the spread of Krippendorff's α
  (the width of its 95 % interval) for the agreement the study will report.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from evaluation import stats
from evaluation.models import Criterion, Deviation, Protocol, Study
from evaluation.quality import EXCLUSION_RULES, alpha_without_each_rater
from healthagent.audit import Action, audit_record
from healthagent.models import AgentVariant

MANIFEST_FORMAT = 1
# The protocol's fields a researcher writes; every one is locked with the manifest.
PROTOCOL_FIELDS = (
    "hypotheses",
    "primary_dimension",
    "primary_variant_a",
    "primary_variant_b",
    "primary_test",
    "sided",
    "alpha",
    "secondary_outcomes",
    "exclusion_rules",
    "planned_items",
    "planned_raters_per_item",
    "power",
)
# The study's own fields the manifest fixes: changing them after the lock is refused (the admin says so).
LOCKED_STUDY_FIELDS = (
    "mode",
    "rubric",
    "seed",
    "raters_per_item",
    "window_days",
    # The rater rules the analysis' exclusions read (the manifest's rater_rules).
    "pass_threshold",
    "gold_rate",
    "gold_minimum",
    "min_seconds_per_item",
    "repeat_share",
    "extra_raters_max",
)


class ProtocolError(Exception):
    """A protocol change that is refused; the message is shown as it stands."""


def canonical_json(document: dict[str, Any]) -> bytes:
    """The bytes that are hashed and exported: sorted keys, no insignificant spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_sha256(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _value(protocol: Protocol, name: str) -> Any:
    value = getattr(protocol, name)
    return value.name if isinstance(value, AgentVariant) else value


def _check(study: Study, values: dict[str, Any]) -> dict[str, Any]:
    dimensions = {dimension.key for dimension in study.rubric.dimensions.all() if dimension.is_scored}
    if not str(values.get("hypotheses", "")).strip():
        raise ProtocolError("write the hypotheses")
    if values.get("primary_dimension") not in dimensions:
        raise ProtocolError(
            f"the primary outcome must be one of the rubric's dimensions: {', '.join(sorted(dimensions))}"
        )
    variant_a, variant_b = values.get("primary_variant_a"), values.get("primary_variant_b")
    if not isinstance(variant_a, AgentVariant) or not isinstance(variant_b, AgentVariant) or variant_a == variant_b:
        raise ProtocolError("the primary comparison needs two different variants")
    studied = set(study.items.values_list("variant_a_id", flat=True)) | set(
        study.items.exclude(variant_b=None).values_list("variant_b_id", flat=True)
    )
    if {variant_a.pk, variant_b.pk} - studied:
        raise ProtocolError("the primary comparison's variants must both be rated in this study")
    if values.get("primary_test") not in Protocol.Test.values or values.get("sided") not in Protocol.Sided.values:
        raise ProtocolError("choose the test and whether it is one- or two-sided")
    if not 0 < float(values.get("alpha", 0)) < 0.5:
        raise ProtocolError("alpha must be between 0 and 0.5")
    unknown = set(values.get("exclusion_rules") or []) - set(EXCLUSION_RULES)
    if unknown:
        raise ProtocolError(f"unknown exclusion rules: {', '.join(sorted(unknown))}")
    if int(values.get("planned_items") or 0) < 5 or int(values.get("planned_raters_per_item") or 0) < 1:
        raise ProtocolError("plan at least 5 items and 1 rater per item")
    return values


def protocol_save(*, study: Study, values: dict[str, Any], user: User, reason: str = "") -> Protocol:
    """Create or change the study's protocol. Before the lock, anything goes (audited). After it, each changed field
    is a deviation recorded with ``reason`` (refused without one)."""
    _check(study, values)
    reason = (reason or "").strip()
    with transaction.atomic():
        protocol = Protocol.objects.select_for_update().filter(study=study).first()
        if protocol is None:
            protocol = Protocol(study=study, **{name: values[name] for name in PROTOCOL_FIELDS if name in values})
            protocol.save()
            audit_record(actor=user, action=Action.PROTOCOL_SAVED, target=study, details={"created": True})
            return protocol
        changed = [
            name for name in PROTOCOL_FIELDS if name in values and _value(protocol, name) != _plain(values[name])
        ]
        if not changed:
            return protocol
        if protocol.locked_at is not None and not reason:
            raise ProtocolError(
                f"the protocol is locked: changing {', '.join(changed)} is a deviation; say why (the reason is kept "
                "with the study, its dashboard and its exports)"
            )
        for name in changed:
            before = _value(protocol, name)
            setattr(protocol, name, values[name])
            if protocol.locked_at is not None:
                Deviation.objects.create(
                    protocol=protocol,
                    field=name,
                    before=before,
                    after=_plain(values[name]),
                    reason=reason,
                    created_by=user,
                )
                audit_record(
                    actor=user,
                    action=Action.PROTOCOL_DEVIATION,
                    target=study,
                    details={"field": name, "before": before, "after": _plain(values[name]), "reason": reason[:1000]},
                )
        protocol.save()
        if protocol.locked_at is None:
            audit_record(actor=user, action=Action.PROTOCOL_SAVED, target=study, details={"changed": changed})
    return protocol


def _plain(value: Any) -> Any:
    return value.name if isinstance(value, AgentVariant) else value


def _criteria_fingerprint(study: Study) -> dict[str, Any]:
    rows = list(
        Criterion.objects.filter(item__study=study)
        .order_by("item__position", "position")
        .values_list("item__position", "position", "text", "points", "category")
    )
    document = {"criteria": [list(row) for row in rows]}
    return {"count": len(rows), "sha256": hashlib.sha256(canonical_json(document)).hexdigest()}


def manifest_of(protocol: Protocol, *, locked_at: str, locked_by: str) -> dict[str, Any]:
    """Everything the protocol fixes, with the study's design and rubric, as plain JSON."""
    study = protocol.study
    dimensions = [
        {
            "key": dimension.key,
            "label": dimension.label,
            "question": dimension.question,
            "scale": dimension.scale,
            **(
                {"points": dimension.points, "anchors": dimension.anchors}
                if dimension.is_scored
                else {"questions": dimension.harm_questions}
            ),
        }
        for dimension in study.rubric.dimensions.all()
    ]
    return {
        "format": MANIFEST_FORMAT,
        "study": {"id": study.pk, "name": study.name, "mode": study.mode, "window_days": study.window_days},
        "hypotheses": protocol.hypotheses,
        "primary": {
            "dimension": protocol.primary_dimension,
            "statistic": "share of the first variant's wins among decided judgements (binomial test)"
            if study.mode == Study.Mode.PAIRWISE
            else "difference of the per-participant mean scores (first variant minus second)",
            "variants": [protocol.primary_variant_a.name, protocol.primary_variant_b.name],
            "test": "binomial" if study.mode == Study.Mode.PAIRWISE else protocol.primary_test,
            "sided": protocol.sided,
            "alpha": protocol.alpha,
        },
        "secondary_outcomes": protocol.secondary_outcomes,
        "rubric": {
            "name": study.rubric.name,
            "version": hashlib.sha256(canonical_json({"dimensions": dimensions})).hexdigest()[:16],
            "dimensions": dimensions,
        },
        # The items' own criteria (issue 22): how many, and a hash of all of them (item, position, text, points,
        # category); they cannot change once the protocol is locked (evaluation.criteria).
        "criteria": _criteria_fingerprint(study),
        "assignment_seed": study.seed,
        "exclusion_rules": sorted(protocol.exclusion_rules),
        "planned": {"items": protocol.planned_items, "raters_per_item": protocol.planned_raters_per_item},
        "rater_rules": {
            "consent_version": study.consent_version if study.consent_text else None,
            "pass_threshold": study.pass_threshold,
            "gold_rate": study.gold_rate,
            "gold_minimum": study.gold_minimum,
            "min_seconds_per_item": study.min_seconds_per_item,
            "repeat_share": study.repeat_share,
            "extra_raters_max": study.extra_raters_max,
        },
        "power": protocol.power,
        "locked_at": locked_at,
        "locked_by": locked_by,
    }


def protocol_lock(*, study: Study, user: User) -> Protocol:
    """Fix the protocol: write the manifest, hash it, and put the hash in the audit log. Only while the study is a
    draft (the analysis is fixed before the data comes in), and only once."""
    if study.status != Study.Status.DRAFT:
        raise ProtocolError("a protocol can be locked only before the study opens")
    with transaction.atomic():
        protocol = Protocol.objects.select_for_update().filter(study=study).first()
        if protocol is None:
            raise ProtocolError("write the protocol first")
        if protocol.locked_at is not None:
            raise ProtocolError("the protocol is locked already")
        now = timezone.now()
        manifest = manifest_of(protocol, locked_at=now.isoformat(), locked_by=user.get_username())
        protocol.locked_at, protocol.locked_by = now, user
        protocol.manifest, protocol.manifest_sha256 = manifest, manifest_sha256(manifest)
        protocol.save(update_fields=["locked_at", "locked_by", "manifest", "manifest_sha256"])
        audit_record(
            actor=user, action=Action.PROTOCOL_LOCKED, target=study, details={"sha256": protocol.manifest_sha256}
        )
    return protocol


# --- Power analysis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerInputs:
    """The assumptions: a single rating's standard deviation, the expected difference between the variants, the
    share of a rating's variance that is the item's (the ICC: inter-rater agreement), and the share of an item's own
    variance that its participant's other item shares (pairing)."""

    sd: float = 1.0
    difference: float = 0.3
    icc: float = 0.5
    participant_share: float = 0.5
    alpha: float = 0.05
    sided: str = "two-sided"
    test: str = "wilcoxon"
    points: tuple[int, ...] | None = (1, 2, 3, 4, 5)  # None: a continuous scale (for the closed-form check)
    mean: float = 3.0


def simulated_ratings(inputs: PowerInputs, *, items: int, raters: int, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study: ``items`` participants, each with an answer of variant A and of B, each answer rated by
    ``raters`` raters; columns as the dashboard's long table (item, rater, variant, participant, score)."""
    item_sd = inputs.sd * np.sqrt(inputs.icc)
    noise_sd = inputs.sd * np.sqrt(1 - inputs.icc)
    shared = rng.normal(0, item_sd * np.sqrt(inputs.participant_share), items)
    own = rng.normal(0, item_sd * np.sqrt(1 - inputs.participant_share), (2, items))
    # The expected difference in the direction the protocol tests ("less": the first variant scores lower).
    difference = -abs(inputs.difference) if inputs.sided == "less" else inputs.difference
    truth = inputs.mean + shared[None, :] + own + np.array([difference / 2, -difference / 2])[:, None]
    scores = truth[:, :, None] + rng.normal(0, noise_sd, (2, items, raters))
    if inputs.points is not None:
        scores = np.clip(np.round(scores), min(inputs.points), max(inputs.points))
    variant = np.repeat(np.array(["A", "B"]), items * raters)
    participant = np.tile(np.repeat(np.arange(items), raters), 2)
    return pd.DataFrame(
        {
            "item": np.repeat(np.arange(2 * items), raters),
            "rater": np.tile(np.arange(raters), 2 * items),
            "variant": variant,
            "participant": participant,
            "score": scores.reshape(-1),
        }
    )


def power_curve(
    inputs: PowerInputs,
    *,
    items: list[int],
    raters: list[int],
    simulations: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per (items, raters per item): the share of simulated studies in which the dashboard's test rejects at alpha
    (power, with its simulation standard error), and the width of the middle 95 % of Krippendorff's α (interval)
    across them."""
    rows = []
    for k in raters:
        for n in items:
            rng = np.random.default_rng([seed, n, k])
            rejected, alphas = 0, []
            for _ in range(simulations):
                frame = simulated_ratings(inputs, items=n, raters=k, rng=rng)
                result = stats.paired_comparison(frame, "A", "B", test=inputs.test, alternative=inputs.sided)
                rejected += bool(result.get("enough") and result["p_value"] < inputs.alpha)
                if k >= 2:
                    # The dashboard's α: ordinal on a rubric's points, interval on a continuous scale.
                    level = "interval" if inputs.points is None else "ordinal"
                    value, _ = alpha_without_each_rater(frame, level=level, values=inputs.points, each_rater=False)
                    if value is not None:
                        alphas.append(value)
            power = rejected / simulations
            low, high = np.quantile(alphas, [0.025, 0.975]) if alphas else (np.nan, np.nan)
            rows.append(
                {
                    "items": n,
                    "raters": k,
                    "power": power,
                    "power_se": float(np.sqrt(power * (1 - power) / simulations)),
                    "alpha_median": float(np.median(alphas)) if alphas else None,
                    "alpha_width": float(high - low) if alphas else None,
                }
            )
    return rows


def power_choice(
    curve: list[dict[str, Any]], *, target_power: float, raters: int, target_alpha_width: float | None = None
) -> dict[str, Any] | None:
    """The smallest number of items that reaches the target power (and α width) with ``raters`` raters per item."""
    for row in sorted((row for row in curve if row["raters"] == raters), key=lambda row: row["items"]):
        width_ok = target_alpha_width is None or (
            row["alpha_width"] is not None and row["alpha_width"] <= target_alpha_width
        )
        if row["power"] >= target_power and width_ok:
            return row
    return None


def closed_form_power(inputs: PowerInputs, *, items: int, raters: int) -> float:
    """Power of the paired t-test of this design on a continuous scale, from the noncentral t distribution: the
    per-participant difference has variance 2·(own item variance + noise variance / raters)."""
    from scipy import stats as scipy_stats

    item_variance = inputs.sd**2 * inputs.icc * (1 - inputs.participant_share)
    noise_variance = inputs.sd**2 * (1 - inputs.icc)
    sd_difference = np.sqrt(2 * (item_variance + noise_variance / raters))
    noncentrality = inputs.difference * np.sqrt(items) / sd_difference
    freedom = items - 1
    if inputs.sided == "two-sided":
        critical = scipy_stats.t.ppf(1 - inputs.alpha / 2, freedom)
        return float(
            1
            - scipy_stats.nct.cdf(critical, freedom, noncentrality)
            + scipy_stats.nct.cdf(-critical, freedom, noncentrality)
        )
    # One-sided: the difference is assumed in the direction tested (as the simulation draws it).
    critical = scipy_stats.t.ppf(1 - inputs.alpha, freedom)
    return float(1 - scipy_stats.nct.cdf(critical, freedom, abs(noncentrality)))


POWER_ITEMS = [10, 20, 40, 80, 160, 320]
POWER_RATERS = [1, 2, 3]


def power_analysis(
    inputs: PowerInputs,
    *,
    target_power: float,
    raters: int,
    target_alpha_width: float | None = None,
    simulations: int = 100,
    seed: int = 0,
    planned_items: int | None = None,
) -> dict[str, Any]:
    """The curve over the usual sizes (and the planned one), the smallest design that meets the targets with
    ``raters`` raters per item, and the inputs: what the protocol stores as its power analysis."""
    grid = sorted(set(POWER_RATERS) | {raters})
    sizes = sorted(set(POWER_ITEMS) | ({planned_items} if planned_items else set()))
    curve = power_curve(inputs, items=sizes, raters=grid, simulations=simulations, seed=seed)
    choice = power_choice(curve, target_power=target_power, raters=raters, target_alpha_width=target_alpha_width)
    return {
        "inputs": {**inputs.__dict__, "points": list(inputs.points) if inputs.points else None},
        "target_power": target_power,
        "target_alpha_width": target_alpha_width,
        "simulations": simulations,
        "seed": seed,
        "method": "simulated studies analysed by evaluation.stats.paired_comparison, the dashboard's test",
        "curve": curve,
        "choice": choice,
        "planned": next((row for row in curve if row["items"] == planned_items and row["raters"] == raters), None),
    }


def power_figure(power: dict[str, Any]) -> str | None:
    """Power (left) and the width of α's 95 % interval (right) against the number of items, a line per raters/item."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    curve = power.get("curve") or []
    if not curve:
        return None
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("Power of the primary comparison", "Width of α's 95 % interval")
    )
    for k in sorted({row["raters"] for row in curve}):
        rows = sorted((row for row in curve if row["raters"] == k), key=lambda row: row["items"])
        name = f"{k} rater{'s' if k > 1 else ''} per item"
        figure.add_trace(
            go.Scatter(
                x=[r["items"] for r in rows],
                y=[r["power"] for r in rows],
                name=name,
                mode="lines+markers",
                legendgroup=name,
            ),
            row=1,
            col=1,
        )
        if any(r["alpha_width"] is not None for r in rows):
            figure.add_trace(
                go.Scatter(
                    x=[r["items"] for r in rows],
                    y=[r["alpha_width"] for r in rows],
                    name=name,
                    mode="lines+markers",
                    legendgroup=name,
                    showlegend=False,
                ),
                row=1,
                col=2,
            )
    figure.add_hline(y=power.get("target_power", 0.8), line_dash="dot", row=1, col=1)
    if power.get("target_alpha_width"):
        figure.add_hline(y=power["target_alpha_width"], line_dash="dot", row=1, col=2)
    figure.update_xaxes(type="log", title="items")
    figure.update_layout(
        height=340,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
    )
    return str(figure.to_json())
