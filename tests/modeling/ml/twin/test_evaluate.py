"""The report's statistics: paired bootstrap AUROCs and the history cut."""

import numpy as np
import pytest

from modeling.ml.twin.evaluate import (
    MIN_EVENTS,
    TRIALS,
    paired_bootstrap,
    record_until,
    risk_counts,
    risk_markdown,
)
from modeling.ml.twin.tokens import ParticipantRecord


def test_the_paired_bootstrap_separates_a_perfect_score_from_noise():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.2).astype(int)
    result = paired_bootstrap(labels, labels + rng.normal(0, 0.1, 300), rng.random(300), resamples=200, seed=1)
    assert result["model"] > 0.99 and result["model_ci"][0] > 0.95
    assert 0.35 < result["score"] < 0.65 and result["difference_ci"][0] > 0.2


def test_a_history_keeps_nothing_after_the_prediction_day():
    record = ParticipantRecord(
        50.0,
        "female",
        False,
        [{"day": d, "name": "ldl", "value": 100.0} for d in (10, 400)],
        [{"day": 500, "kind": "endpoint", "name": "stroke"}],
        last_day=729,
    )
    history = record_until(record, 364)
    assert history.last_day == 364 and [m["day"] for m in history.measurements] == [10] and history.events == []


def test_the_risk_cohort_leaves_out_a_death_on_the_prediction_day(tokenizer, monkeypatch):
    """A participant who died on the prediction day is at risk of nothing after it: not kept (their record still
    reaches that day), while a death the day after is an event inside the horizon."""
    from modeling.ml.twin import evaluate
    from modeling.ml.twin.data import simulated_records

    settings = evaluate.TwinReportSettings(participants=4, history_days=100, horizon_days=50, samples=1, seed=3)
    cutoff = settings.history_days - 1
    simulated = simulated_records(participants=4, days=150, seed=3, intervention_probability=0.0)
    assert all(record.last_day == 149 for record in simulated.records)  # nobody died: the edits below are the deaths
    for index, day in ((1, cutoff), (2, cutoff + 1)):
        record = simulated.records[index]
        record.events = [e for e in record.events if e["day"] < day] + [
            {"day": day, "kind": "endpoint", "name": "death"}
        ]
        record.last_day = day
    monkeypatch.setattr(evaluate, "simulated_records", lambda **kwargs: simulated)
    monkeypatch.setattr(evaluate, "simulate", lambda model, tokenizer, histories, **kwargs: len(histories))
    cohort = evaluate.risk_cohort(None, tokenizer, settings)
    assert cohort.kept == [0, 2, 3] and cohort.rollouts == 3
    assert cohort.outcome["death"].tolist() == [False, True, False] and not cohort.prevalent["death"].any()
    assert evaluate.died_by(simulated.records[1], cutoff) and not evaluate.died_by(simulated.records[2], cutoff)
    # the calibration's half without a height is by each participant's place in the cohort, not among those kept
    halved = evaluate.risk_cohort(None, tokenizer, settings, every_other_height=True)
    assert [history.height_m is None for history in halved.histories] == [False, False, True]


def test_there_are_at_least_twenty_trials_over_every_intervention():
    assert len(TRIALS) >= 20 and len({intervention for intervention, _, _ in TRIALS}) == 5
    assert len({population for _, _, population in TRIALS}) >= 5


def test_the_bootstrap_of_a_rare_endpoint_keeps_its_events_in_every_resample():
    """Stratified: with 2 events among 300 no resample loses them, so the interval of a score that ranks
    one event first and the other last spans both (an unstratified bootstrap drops 13 % of resamples)."""
    labels = np.zeros(300, dtype=int)
    labels[[0, 1]] = 1
    score = np.arange(300, dtype=float)[::-1].copy()  # event 0 ranked first, event 1 second: AUROC 1
    score[1] = -1.0  # ...now event 1 is ranked last: AUROC 0.5
    result = paired_bootstrap(labels, score, np.random.default_rng(0).random(300), resamples=300, seed=2)
    assert result["model"] == 0.5 and result["model_ci"][0] < 0.5 < result["model_ci"][1]
    assert paired_bootstrap(np.zeros(50, dtype=int), np.zeros(50), np.zeros(50), resamples=10, seed=0)["model_ci"] == [
        None,
        None,
    ]


def test_the_risk_table_flags_endpoints_with_few_events_and_does_not_count_them():
    def row(endpoint, events, difference):
        ci = [difference - 0.05, difference + 0.05]
        return {
            "endpoint": endpoint,
            "at_risk": 900,
            "events": events,
            "observed_incidence": 0.01,
            "predicted_incidence": 0.02,
            "model": 0.7,
            "model_ci": [0.6, 0.8],
            "score_name": "a score",
            "score": 0.7 - difference,
            "score_ci": [0.6, 0.8],
            "difference": difference,
            "difference_ci": ci,
            "few_events": events < MIN_EVENTS,
            "win": difference > 0,
            "significant_win": ci[0] > 0,
            "significant_loss": ci[1] < 0,
        }

    rows = [row("hypertension", 40, 0.1), row("stroke", 3, 0.2), row("death", 5, -0.3), row("obesity", 60, -0.2)]
    rows[2]["true_state"] = {
        "auroc": 0.81,
        "auroc_ci": [0.7, 0.9],
        "minus_score": 0.011,
        "minus_score_ci": [-0.02, 0.04],
    }
    counts = risk_counts(rows)
    assert counts == {
        "min_events": MIN_EVENTS,
        "counted_endpoints": 2,
        "wins": 1,
        "significant_wins": 1,
        "significant_losses": 1,
        "wins_all_endpoints": 2,
    }  # stroke's win and death's loss are shown, not counted
    markdown = risk_markdown({"rows": rows, "participants": 900, **counts}, "# header")
    assert (
        "| stroke † |" in markdown
        and "| death † |" in markdown
        and "| hypertension |" in markdown
        and "**1 of 2**" in markdown
    )
    assert (
        "| 0.81 [0.70, 0.90]; 0.011 [-0.020, 0.040] |" in markdown and markdown.count("| — |") == 3
    )  # hard endpoints only


def test_the_true_state_hazard_is_the_simulator_s_own_on_the_prediction_day():
    """The ceiling of the hard endpoints reads each participant's true values on the prediction day, as the simulator
    drew them, and keeping them changes no record."""
    from modeling.ml.data.clinical import hard_endpoint_daily_hazard, simulate_timeline
    from modeling.ml.twin.ceilings import true_state_hazard
    from modeling.ml.twin.data import participant_stream, simulated_records

    plain = simulated_records(participants=6, days=300, seed=21, intervention_probability=0.0)
    kept = simulated_records(participants=6, days=300, seed=21, intervention_probability=0.0, latent_on_day=199)
    assert [r.measurements for r in plain.records] == [r.measurements for r in kept.records] and not plain.latent
    stream = participant_stream(21, 4)
    # simulated_records' own draws before the timeline's: the intervention's (none given) and the wearable's (if that
    # order changes, this test fails, it does not pass wrongly)
    stream.random(), stream.random()
    timeline = simulate_timeline(kept.traits, 4, 300, stream)
    assert kept.latent[4] == {name: float(values[199]) for name, values in timeline.latent.items()}

    hazard = true_state_hazard(kept, [1, 4], "heart_failure")
    age = kept.traits.age_years[4] + 199 / 365
    by_day = hard_endpoint_daily_hazard("heart_failure", kept.traits, 4, age, timeline.latent)
    assert hazard[1] == pytest.approx(float(by_day[199])) and hazard[1] != pytest.approx(float(by_day[198]))

    with pytest.raises(ValueError, match="kept no true values"):
        true_state_hazard(plain, [1], "stroke")
    with pytest.raises(ValueError, match="a day of the simulation"):
        simulated_records(participants=2, days=300, seed=21, latent_on_day=300)


def test_a_trial_enrols_only_people_not_already_on_the_treatment(tokenizer, monkeypatch):
    """High-LDL people often got a statin in usual care during the history year; a statin trial must not enrol them
    (the simulator's trial effect assumes a first start, and the twin would see a second)."""
    import torch

    from modeling.ml.twin import evaluate
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel

    enrolled = []
    real_simulate = evaluate.simulate

    def recording_simulate(model, tokenizer, histories, **kwargs):
        enrolled.extend(histories)
        return real_simulate(model, tokenizer, histories, **kwargs)

    monkeypatch.setattr(evaluate, "simulate", recording_simulate)
    # Every personal response 1: each trial participant's true change is then the trait ceiling's prediction itself,
    # which shows the ceiling is computed for the trial's own people, in order, and its own days.
    from modeling.ml.data import clinical

    monkeypatch.setattr(clinical, "sample_response", lambda participants, rng: np.ones(participants))
    torch.manual_seed(0)
    model = HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer)).eval()
    settings = evaluate.TwinReportSettings(
        history_days=730, trial_participants=12, trial_samples=2, trial_days=14, seed=77
    )
    table = evaluate.trial_table(model, tokenizer, settings, trials=(("statin", "ldl", "high_ldl"),))
    row = table["rows"][0]
    statin = tokenizer.token_id("medication:statin")
    assert row["participants"] == 12 == len(enrolled) and row["excluded_already_treated_or_dead"] > 0
    assert all(statin not in history.ids for history in enrolled)
    # each participant's predicted and true effect are kept, with the LDL the twin was given: the pooled r is theirs
    people = row["individuals"]
    assert len(people) == 12 and all(
        person["latest_measured"] is None or person["latest_measured"] > 0 for person in people
    )
    predicted, truth = [person["predicted"] for person in people], [person["true"] for person in people]
    assert row["individual_r"] == pytest.approx(float(np.corrcoef(predicted, truth)[0, 1]), abs=1e-3)
    assert row["predicted_mean"] == pytest.approx(float(np.mean(predicted)), abs=1e-3)
    # beside it, the r that each person's exact traits reach: a ceiling, their own response to the statin unknown
    assert [person["trait_ceiling"] for person in people] == truth and np.std(truth) > 1
    assert row["individual_r_trait_ceiling"] == pytest.approx(1.0)
    assert table["individual_r_trait_ceiling_by_biomarker"]["ldl"] == pytest.approx(1.0)
    assert "| trait ceiling |" in evaluate.trial_markdown(table, "# header")


def test_a_trial_does_not_enrol_someone_who_died_on_the_history_s_last_day(tokenizer, monkeypatch):
    """Their record reaches the last day of the history, as a living person's does: the death itself tells."""
    import torch

    from modeling.ml.twin import evaluate
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel

    torch.manual_seed(0)
    model = HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer)).eval()
    settings = evaluate.TwinReportSettings(
        history_days=200, trial_participants=6, trial_samples=1, trial_days=7, seed=78
    )
    trial = (("exercise_programme", "weight", "general"),)
    before = evaluate.trial_table(model, tokenizer, settings, trials=trial)["rows"][0]
    real, made = evaluate.record_from_timeline, []

    def first_dies_on_the_last_day(*args, days, **kwargs):
        record = real(*args, days=days, **kwargs)
        if not made and record.last_day == days - 1:
            record.events.append({"day": days - 1, "kind": "endpoint", "name": "death"})
            made.append(record)
        return record

    monkeypatch.setattr(evaluate, "record_from_timeline", first_dies_on_the_last_day)
    after = evaluate.trial_table(model, tokenizer, settings, trials=trial)["rows"][0]
    assert made and made[0].last_day == settings.history_days - 1
    assert after["excluded_already_treated_or_dead"] == before["excluded_already_treated_or_dead"] + 1
    assert after["participants"] == before["participants"] == 6


def test_the_trait_ceiling_is_the_trial_s_own_truth_at_the_average_response(monkeypatch):
    """The ceiling is computed for the trial's own participants and days: with every personal response at 1 it is the
    true individual effect itself (r = 1), and with responses drawn it stays above a prediction from noisy readings."""
    from modeling.ml.data import clinical
    from modeling.ml.data.traits import sample_traits
    from modeling.ml.twin.ceilings import trait_ceiling

    traits = sample_traits(2000, np.random.default_rng(3))
    base = clinical.baseline_biomarkers(traits)["systolic_bp"]
    ceiling = trait_ceiling(traits, "antihypertensive", "systolic_bp", 90)
    drawn = clinical.simulate_trial(traits, "antihypertensive", "systolic_bp", np.random.default_rng(4), days=90)
    noisy = base + np.random.default_rng(5).normal(0, 10, len(base))  # a reading of the level, 10 mmHg of noise
    r_ceiling = np.corrcoef(ceiling, drawn.true_individual_effect)[0, 1]
    assert np.corrcoef(-noisy, drawn.true_individual_effect)[0, 1] < r_ceiling < 0.99

    monkeypatch.setattr(clinical, "sample_response", lambda participants, rng: np.ones(participants))
    fixed = clinical.simulate_trial(traits, "antihypertensive", "systolic_bp", np.random.default_rng(4), days=90)
    np.testing.assert_allclose(ceiling, fixed.true_individual_effect)
    assert not trait_ceiling(traits, "antihypertensive", "ldl", 90).any()  # no effect on it: nothing to rank


def test_the_fidelity_table_reads_each_biomarker_teacher_forced_and_at_a_visit(tokenizer, monkeypatch):
    import torch

    from modeling.ml.twin import fidelity
    from modeling.ml.twin.evaluate import TwinReportSettings
    from modeling.ml.twin.fidelity import FIDELITY_BIOMARKERS, fidelity_markdown, fidelity_table
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel

    torch.manual_seed(0)
    model = HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).eval()
    table = fidelity_table(model, tokenizer, TwinReportSettings(history_days=200, seed=11), participants=12)
    rows = {row["biomarker"]: row for row in table["rows"]}
    assert set(rows) == set(FIDELITY_BIOMARKERS) and table["participants"] == 12
    assert all(row["pairs"] > 0 and row["slope_on_previous"] is not None for row in rows.values())
    # every simulation starts at the person's latest value; an untrained model's visit does not stay there
    assert all(row["day0_median_abs_sd"] < 1e-3 for row in rows.values())
    assert max(row["visit_median_abs_sd"] for row in rows.values()) > 1.0
    assert "slope on the previous value" in fidelity_markdown(table, "# header")
    # a participant who died in the history is read teacher-forced, but not simulated: no visit follows a death
    assert table["simulated_participants"] == 12
    real_records = fidelity.simulated_records

    def one_died(**kwargs):
        simulated = real_records(**kwargs)
        record = simulated.records[0]
        record.events = [e for e in record.events if e["day"] < 150] + [
            {"day": 150, "kind": "endpoint", "name": "death"}
        ]
        record.measurements, record.last_day = [m for m in record.measurements if m["day"] <= 150], 150
        return simulated

    monkeypatch.setattr(fidelity, "simulated_records", one_died)
    again = fidelity_table(model, tokenizer, TwinReportSettings(history_days=200, seed=11), participants=12)
    assert again["participants"] == 12 and again["simulated_participants"] == 11
