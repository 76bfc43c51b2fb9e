"""The probe study's statistics (issue 24): paired intervals, cross-validated probes, few-shot draws, the summary,
and one end-to-end run on the committed demo weights at toy size."""

import json

import numpy as np
import pytest

from modeling.ml.data.labels import TASKS
from modeling.ml.lsm import probe_study
from modeling.ml.lsm.evaluate import probe_pipeline
from modeling.ml.lsm.probe_study import CohortFeatures, ProbeStudySettings, method

TASK = {task.name: task for task in TASKS}


def test_a_paired_interval_is_narrower_than_separate_ones_and_finds_a_small_real_gain():
    """Two methods sharing most of their error: the difference's interval is paired (same resampled participants)
    and excludes 0, though the methods' own intervals overlap."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 1000)
    shared = rng.normal(0, 1, 1000)
    baseline = truth * 0.8 + shared
    better = truth * 0.95 + shared
    draws = probe_study.resample_indices(truth, resamples=300, seed=1, stratify=True)
    result = probe_study.paired_difference(TASK["diabetes"], truth, better, baseline, draws)
    low, high = result["difference"][1:]
    assert 0 < low < result["difference"][0] < high
    assert result["method"][1] < result["baseline"][2]  # the separate intervals overlap


def test_cross_validation_chooses_strong_regularization_for_noise_and_weak_for_signal():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    signal = np.column_stack([labels + rng.normal(0, 0.3, 400), rng.normal(0, 1, (400, 20))])
    noise = rng.normal(0, 1, (400, 21))
    for features, strong in ((signal, False), (noise, True)):
        model = probe_pipeline("binary", cv=True)
        model.fit(features, labels)
        chosen = float(np.atleast_1d(model[-1].C_)[0])
        assert (chosen <= 0.01) if strong else (chosen >= 0.1), chosen


def test_few_shot_is_averaged_over_draws_and_paired_against_the_baseline():
    rng = np.random.default_rng(2)
    n = 300
    labels = {task.name: rng.integers(0, 2, n) for task in TASKS if task.kind == "binary"}
    tasks = [TASK[name] for name in ("diabetes", "sex")]
    informative = np.column_stack([labels[t.name] + rng.normal(0, 0.5, n) for t in tasks] + [rng.normal(0, 1, (n, 5))])
    data = CohortFeatures(features={"handcrafted": rng.normal(0, 1, (n, 7)), "good": informative}, labels=labels)
    settings = ProbeStudySettings(participants=n, few_shot=[5], draws=4, few_shot_resamples=30)
    train, test = np.arange(150), np.arange(150, n)
    methods = {"handcrafted": method("handcrafted"), "good": method("good")}
    shots = probe_study.few_shot(data, methods, settings, train, test, tasks=tasks)["5"]
    assert shots["handcrafted"]["mean_auroc"] == pytest.approx(0.5, abs=0.1)
    assert shots["good"]["mean_auroc"] > 0.65 and shots["good"]["draw_sd"] >= 0
    assert shots["good"]["difference"][1] > 0  # the paired interval is above 0
    assert "difference" not in shots["handcrafted"]


@pytest.mark.slow
def test_a_toy_study_on_the_demo_weights_writes_its_tables(tmp_path):
    settings = ProbeStudySettings(
        participants=40, days=1, few_shot=[5], draws=2, resamples=20, few_shot_resamples=10, folds=2
    )
    methods = {
        "handcrafted": method("handcrafted"),
        "probe (old: last, C=1)": method("last", cv=False),
        "last_by_channel (CV)": method("last_by_channel"),
    }
    tasks = [TASK[name] for name in ("sex", "age")]
    result = probe_study.run(
        "modeling/demo_weights/lsm", tmp_path, settings, methods, tasks=tasks, log=lambda message: None
    )
    assert result["test_participants"] == 20 and set(result["full_data"]) == {"sex", "age"}
    entry = result["full_data"]["sex"]["methods"]["probe (old: last, C=1)"]
    assert entry["difference"][0] == pytest.approx(entry["method"][0] - entry["baseline"][0])
    assert result["summary"]["last_by_channel (CV)"]["tasks_total"] == 2
    assert set(result["cpu_seconds"]) == {"simulate", "represent", "full_data", "few_shot"}
    assert json.loads((tmp_path / "probe_study.json").read_text())["settings"]["seed"] == 7000
    assert "| sex (binary) |" in (tmp_path / "probe_study.md").read_text()


@pytest.mark.parametrize("name", ["diabetes", "age_group", "systolic_bp"])
def test_the_vectorized_resampled_metric_is_the_metric_of_each_resample(name):
    """Ties, and resamples that lack a class (undefined: NaN, where the metric says None)."""
    task = TASK[name]
    rng = np.random.default_rng(3)
    n = 40
    if task.kind == "regression":
        truth, predicted = rng.normal(0, 1, n), np.round(rng.normal(0, 1, n), 1)
    else:
        classes = 2 if task.kind == "binary" else 4
        truth = rng.choice(classes, n, p=[0.85, 0.15] if classes == 2 else [0.6, 0.2, 0.15, 0.05])
        predicted = rng.dirichlet(np.ones(classes), n)
        predicted[n // 2 :] = predicted[: n // 2]  # repeated rows: ties (rounding would break the sum to 1)
    draws = probe_study.resample_indices(truth, resamples=60, seed=4, stratify=False)
    vectorized = probe_study.resampled_metric(task, truth, predicted, draws)
    expected = [probe_study.metric(task)(truth[pick], predicted[pick]) for pick in draws]
    expected = np.array([np.nan if value is None else value for value in expected])
    assert np.isnan(vectorized).tolist() == np.isnan(expected).tolist()
    np.testing.assert_allclose(vectorized[~np.isnan(expected)], expected[~np.isnan(expected)], atol=1e-12)
    if task.kind != "regression":
        assert np.isnan(expected).any() or task.kind == "binary"  # the rare class goes missing in some resamples
