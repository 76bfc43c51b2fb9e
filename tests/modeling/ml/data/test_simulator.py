"""The synthetic world: reproducible, realistic in shape, and causally wired."""

import numpy as np
import pytest

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.data.clinical import ENDPOINTS, INTERVENTIONS, simulate_timeline, simulate_trial
from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.labels import TASKS, compute_labels
from modeling.ml.data.minutes import simulate_minutes
from modeling.ml.data.spec import FAMILIES, FEATURE_INDEX, FEATURES, NUM_FEATURES
from modeling.ml.data.summaries import daily_summaries
from modeling.ml.data.traits import sample_traits


def test_the_feature_spec_covers_the_published_families():
    assert NUM_FEATURES >= 26
    assert {"cardio", "activity", "eda", "temperature", "respiratory", "sleep", "altimeter"} <= set(FAMILIES)
    assert len({feature.name for feature in FEATURES}) == NUM_FEATURES
    assert all(low < high for low, high in (feature.valid_range for feature in FEATURES))


def test_same_seed_same_cohort_and_participants_do_not_depend_on_cohort_size():
    small = make_cohort(participants=3, days=2, seed=11)
    large = make_cohort(participants=5, days=2, seed=11)
    a, b = small.participant(2), make_cohort(participants=3, days=2, seed=11).participant(2)
    np.testing.assert_array_equal(a.minutes.values, b.minutes.values)
    assert a.timeline.measurements == b.timeline.measurements
    np.testing.assert_array_equal(large.participant(1).minutes.mask, small.participant(1).minutes.mask)
    assert not np.array_equal(
        make_cohort(participants=3, days=2, seed=12).participant(2).minutes.values, a.minutes.values, equal_nan=True
    )


def test_minutes_have_the_grid_shape_and_nan_exactly_where_unobserved():
    record = make_cohort(participants=4, days=3, seed=3).participant(0).minutes
    assert record.values.shape == (3, NUM_FEATURES, 1440) == record.mask.shape
    assert record.values.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(record.values), ~record.mask)
    for feature in FEATURES:  # every observed value is within the spec's plausible range
        channel = record.values[:, FEATURE_INDEX[feature.name]]
        observed = channel[~np.isnan(channel)]
        assert observed.size == 0 or (
            observed.min() >= feature.valid_range[0] and observed.max() <= feature.valid_range[1]
        )


def test_missingness_is_realistic():
    cohort = make_cohort(participants=40, days=7, seed=5)
    masks = [cohort.participant(i).minutes.mask for i in range(40)]
    heart = np.mean([mask[:, FEATURE_INDEX["heart_rate"]].mean() for mask in masks])
    assert 0.6 < heart < 0.99  # charging, off-wrist nights and dropouts, but mostly worn
    spo2 = FEATURE_INDEX["spo2"]
    assert any(not mask[:, spo2].any() for mask in masks)  # some devices have no SpO2 sensor
    assert any(not mask[:, FEATURE_INDEX["skin_conductance"]].any() for mask in masks)


def test_activity_bouts_of_many_kinds_are_recorded_as_ground_truth():
    cohort = make_cohort(participants=60, days=7, seed=9)
    kinds = {event.kind for index in range(60) for event in cohort.participant(index).minutes.events}
    activity_kinds = kinds & set(ACTIVITY_NAMES)
    assert len(ACTIVITY_NAMES) >= 15
    assert len(activity_kinds) >= 15, sorted(activity_kinds)
    assert {"sleep", "stress"} <= kinds


def test_signals_follow_the_traits():
    """Fitter people have lower resting heart rates; people who move more take more steps."""
    cohort = make_cohort(participants=80, days=4, seed=21)
    resting, steps = [], []
    for index in range(80):
        minutes = cohort.participant(index).minutes
        summaries = daily_summaries(minutes.values, minutes.mask)
        resting.append(np.nanmean([s["resting_heart_rate_bpm"] or np.nan for s in summaries]))
        steps.append(np.nanmean([s["steps"] or np.nan for s in summaries]))
    assert np.corrcoef(cohort.traits.resting_heart_rate_bpm, resting)[0, 1] > 0.6
    assert np.corrcoef(cohort.traits.activity_propensity, np.log(steps))[0, 1] > 0.4


def test_there_are_thirty_tasks_across_all_families_with_both_classes_present():
    assert len(TASKS) >= 30
    assert {task.family for task in TASKS} == {
        "cardiovascular",
        "metabolic",
        "sleep",
        "mental_health",
        "lifestyle",
        "demographics",
    }
    assert {task.kind for task in TASKS} == {"binary", "multiclass", "regression"}
    traits = sample_traits(2000, np.random.default_rng(0))
    labels = compute_labels(traits, np.random.default_rng(1))
    for task in TASKS:
        values = labels[task.name]
        assert len(values) == 2000
        if task.kind != "regression":
            assert set(np.unique(values)) == set(range(len(task.classes))), task.name
    assert np.corrcoef(traits.systolic_bp_mmhg, labels["systolic_bp"])[0, 1] > 0.9
    assert labels["diabetes"][traits.hba1c_pct > 7.5].mean() > 0.95


def test_timelines_hold_labs_diagnoses_and_endpoints():
    traits = sample_traits(200, np.random.default_rng(4))
    timelines = [simulate_timeline(traits, i, 365, np.random.default_rng(i)) for i in range(200)]
    names = {m["name"] for t in timelines for m in t.measurements}
    assert {"hba1c", "ldl", "systolic_bp", "weight", "cgm_mean_glucose"} <= names
    happened = {e["name"] for t in timelines for e in t.events if e["kind"] in ("diagnosis", "endpoint")}
    assert len(happened & set(ENDPOINTS)) >= 6, happened


def test_an_intervention_changes_the_latent_trajectory_in_its_direction():
    traits = sample_traits(1, np.random.default_rng(8))
    without = simulate_timeline(traits, 0, 200, np.random.default_rng(3), response={"statin": 1.0})
    with_statin = simulate_timeline(
        traits, 0, 200, np.random.default_rng(3), interventions=(("statin", 50),), response={"statin": 1.0}
    )
    difference = with_statin.latent["ldl"] - without.latent["ldl"]
    assert np.allclose(difference[:50], 0)
    assert difference[199] < -0.3 * traits.ldl_mg_dl[0]


@pytest.mark.parametrize(
    "intervention,biomarker",
    [
        ("statin", "ldl"),
        ("antihypertensive", "systolic_bp"),
        ("exercise_programme", "daily_steps"),
        ("diet_change", "weight"),
        ("sleep_extension", "sleep_minutes"),
    ],
)
def test_trials_recover_the_true_effect(intervention, biomarker):
    traits = sample_traits(600, np.random.default_rng(31))
    result = simulate_trial(traits, intervention, biomarker, np.random.default_rng(32), days=120)
    assert result.ci95[0] <= result.true_average_effect <= result.ci95[1]
    assert np.sign(result.estimated_effect) == np.sign(result.true_average_effect) != 0
    assert result.true_individual_effect.std() > 0  # effects differ between people
    assert intervention in {i.name for i in INTERVENTIONS}


def test_a_month_long_record_has_one_window_per_day():
    traits = sample_traits(1, np.random.default_rng(0))
    record = simulate_minutes(traits.row(0), 30, np.random.default_rng(1))
    assert record.values.shape == (30, NUM_FEATURES, 1440)


def test_nightly_heart_rate_variability_is_in_the_human_range():
    """Adult nocturnal RMSSD is typically 20-80 ms and rarely above 150 ms, atrial fibrillation included
    (a wrist device drops irregular beats); the demo cohort once showed fit people with AF at 200-300 ms."""
    cohort = make_cohort(participants=50, days=14, seed=2026)  # the demo cohort
    nightly, asleep_minutes = [], []
    for participant in cohort:
        minutes = participant.minutes
        nightly += [
            day["hrv_rmssd_ms"]
            for day in daily_summaries(minutes.values, minutes.mask)
            if day["hrv_rmssd_ms"] is not None
        ]
        stage = minutes.values[:, FEATURE_INDEX["sleep_stage"]]
        asleep_minutes.append(minutes.values[:, FEATURE_INDEX["rmssd"]][stage >= 1])
    nightly = np.array(nightly)
    assert 30 <= np.median(nightly) <= 70
    assert np.percentile(nightly, 95) < 150
    assert np.mean(nightly > 150) < 0.01
    assert np.nanpercentile(np.concatenate(asleep_minutes), 99) < 200  # what the chart draws, minute by minute


def test_the_clinical_world_is_pinned_draw_for_draw():
    """Forty people's timelines over 500 days (a statin for every third) and the hard endpoints' hazard at fixed values
    are what they were when the twin's tables were written: a change to the simulator must change this test, in its
    own commit with its physiological reason (issue 24), never as a side effect of a refactor."""
    import hashlib
    import json

    from modeling.ml.data.clinical import hard_endpoint_daily_hazard

    traits = sample_traits(40, np.random.default_rng(8))
    parts = []
    for i in range(40):
        given = (("statin", 100),) if i % 3 == 0 else ()
        timeline = simulate_timeline(traits, i, 500, np.random.default_rng(100 + i), interventions=given)
        measured = [(m["day"], m["name"], round(m["value"], 1)) for m in timeline.measurements]
        parts.append([timeline.events, measured])
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    assert digest == "90363cfa0825ca9ec66ff70a92a79ca109385e93baa20b9aa97d3e752df8c383"

    latent = {"systolic_bp": 150.0, "ldl": 160.0, "hdl": 40.0, "hba1c": 6.7}
    yearly = {e: 365 * float(hard_endpoint_daily_hazard(e, traits, 0, 62.0, latent)) for e in ("stroke", "death")}
    assert yearly == pytest.approx({"stroke": 0.017878739842747765, "death": 0.02383831979033035}, rel=1e-12)
    many = sample_traits(400, np.random.default_rng(8))
    fibrillating = int(np.flatnonzero(many.atrial_fibrillation)[0])
    ratio = hard_endpoint_daily_hazard("heart_failure", many, fibrillating, 62.0, latent) / hard_endpoint_daily_hazard(
        "stroke", many, fibrillating, 62.0, latent
    )
    assert ratio == pytest.approx(np.exp(0.5))  # atrial fibrillation raises heart failure's hazard alone
