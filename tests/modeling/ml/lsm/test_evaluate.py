"""The downstream evaluation: probes score what the representation holds, on held-out participants."""

import numpy as np

from modeling.ml.data.labels import TASKS
from modeling.ml.lsm.evaluate import Representations, downstream_tables, evaluate, few_shot_rows, markdown


def test_a_representation_that_holds_the_label_scores_high_and_noise_scores_chance():
    rng = np.random.default_rng(0)
    participants = 300
    labels = {}
    for task in TASKS:
        if task.kind == "regression":
            labels[task.name] = rng.normal(50, 10, participants)
        else:
            labels[task.name] = rng.integers(0, len(task.classes), participants)
    informative = np.column_stack(
        [labels["hypertension"] + rng.normal(0, 0.3, participants), rng.normal(size=(participants, 5))]
    )
    noise = rng.normal(size=(participants, 6))
    rows = {
        row["task"]: row for row in evaluate(Representations(informative, noise, labels), few_shot=(5,), bootstrap=30)
    }
    hypertension = rows["hypertension"]
    assert hypertension["pretrained"]["auroc"][0] > 0.9 and hypertension["pretrained"]["auroc"][1] > 0.8
    assert 0.3 < hypertension["handcrafted"]["auroc"][0] < 0.7
    assert "mae" in rows["age"]["pretrained"] and "pretrained_5_shot" in hypertension
    tables = downstream_tables(list(rows.values()))
    assert [table["title"] for table in tables] == ["All training participants", "5 labelled participants per class"]
    assert len(tables[0]["rows"]) == len(TASKS) and len(tables[1]["rows"]) == sum(
        task.kind != "regression" for task in TASKS
    )
    assert tables[0]["columns"] == [
        "task",
        "family",
        "metric",
        "pre-trained probe",
        "hand-crafted",
    ]  # no windows: no supervised column
    assert "pre-trained probe" in tables[0]["summary"] and "best on" in tables[0]["summary"]
    assert markdown(tables, header="# test").count("\n| ") == len(TASKS) + len(tables[1]["rows"]) + 2


def test_few_shot_takes_k_participants_per_class_from_the_training_split_only():
    labels = np.array([0, 1] * 50)
    train = np.arange(30, 100)
    chosen = few_shot_rows(labels, train, 5, seed=1)
    assert len(chosen) == 10 and set(chosen) <= set(train)
    assert sorted(np.bincount(labels[chosen])) == [5, 5]


def test_the_probe_s_rotation_onto_the_training_rows_changes_no_prediction():
    """The probe fits in the span of its training rows (PCA with every component): with more features than rows, the
    same predictions as the probe on the raw features, for ridge and for logistic regression."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modeling.ml.lsm.evaluate import probe_pipeline

    rng = np.random.default_rng(3)
    features = rng.normal(size=(140, 300))
    labels = (features[:, :3].sum(axis=1) + rng.normal(0, 1, 140) > 0).astype(int)
    train, test = np.arange(40), np.arange(40, 140)
    rotated = probe_pipeline("binary", regularization=0.01).fit(features[train], labels[train])
    assert rotated[-2].pca_.n_components_ == 40  # the rows' span, not 300 dimensions
    plain = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", tol=1e-8))
    plain.fit(features[train], labels[train])
    difference = rotated.predict_proba(features[test]) - plain.predict_proba(features[test])
    assert np.abs(difference).max() < 1e-3
    values = features[:, 0] * 2 + rng.normal(0, 1, 140)
    ridge = probe_pipeline("regression", regularization=5.0).fit(features[train], values[train])
    plain_ridge = make_pipeline(StandardScaler(), Ridge(alpha=5.0)).fit(features[train], values[train])
    np.testing.assert_allclose(ridge.predict(features[test]), plain_ridge.predict(features[test]), atol=1e-8)


def test_a_feature_the_participant_lacks_is_read_as_the_training_mean_not_as_zero():
    """A channel a device lacks is NaN in the per-channel embedding; the probe imputes its training mean, so the
    prediction is what a participant at the mean of that channel would get. With more rows than features, the
    probe does not rotate."""
    from modeling.ml.lsm.evaluate import probe_pipeline

    rng = np.random.default_rng(4)
    features = rng.normal(5, 1, size=(200, 4))
    labels = (features[:, 0] + features[:, 1] > 10).astype(int)
    model = probe_pipeline("binary", regularization=1.0).fit(features, labels)
    assert model[-2].pca_ is None
    lacking = features[:5].copy()
    lacking[:, 1] = np.nan
    at_mean = features[:5].copy()
    at_mean[:, 1] = features[:, 1].mean()
    np.testing.assert_allclose(model.predict_proba(lacking), model.predict_proba(at_mean))
