"""Per-task comparison: three disjoint participant splits; the test split is scored once per method."""

import json

from modeling.ml.heads import compare
from modeling.ml.heads.compare import compare_tables, compare_task, split_three, token_windows
from modeling.ml.heads.search import RandomProposer
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining


def test_the_three_splits_are_disjoint_and_cover_everyone():
    split = split_three(50, seed=2)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert [len(part) for part in parts] == [30, 10, 10]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]) and set.union(*parts) == set(
        range(50)
    )


def test_a_task_is_compared_with_the_test_split_scored_once_per_method(tmp_path, monkeypatch):
    LSMForMaskedPretraining(LSMConfig.named("tiny")).save_pretrained(tmp_path)
    (tmp_path / "normalization.json").write_text(
        json.dumps({"mean": [0.0] * 27, "std": [50.0] * 27, "pretraining": {"seed": 0}})
    )
    data, embeddings, labels = token_windows(tmp_path, participants=30, days=1, seed=9)
    assert data.tokens.shape[:2] == (30, 27 * 24) and embeddings.shape == (
        30,
        27 * 64,
    )  # the last layer pooled per channel
    scored_sets = []
    real_fit = compare.fit_and_score

    def recording_fit(spec, data, labels, kind, train_people, scored_people, **kwargs):
        scored_sets.append(tuple(sorted(scored_people)))
        return real_fit(spec, data, labels, kind, train_people, scored_people, **kwargs)

    monkeypatch.setattr(compare, "fit_and_score", recording_fit)
    monkeypatch.setattr("modeling.ml.heads.search.fit_and_score", recording_fit)

    class Quick(RandomProposer):
        def propose(self, leaderboard, rng):
            return {**super().propose(leaderboard, rng), "training": {"epochs": 2}}

    row = compare_task("sex", data, embeddings, labels["sex"], {"random": Quick}, budget=2, seed=1, bootstrap=5)
    test = tuple(sorted(split_three(30, 1).test))
    assert scored_sets.count(test) == 1 and len(scored_sets) == 3  # two validation trainings, one test scoring
    assert "auroc" in row["linear_probe"] and "auroc" in row["random"] and row["random"]["trainings"] == 2
    assert row["random"]["spec"]["training"]["epochs"] == 2
    paired = row["random"]["vs_probe"]  # the head minus the probe on the same test participants, paired
    low, high = paired["difference_ci"]
    assert paired["difference"] is not None and low <= paired["difference"] <= high
    titles = [table["title"] for table in compare_tables([row])]
    assert titles[:2] == [
        "Test participants (metric with bootstrap 95 % CI)",
        "Each method's best head minus the linear probe, on the same test participants",
    ]
