"""The scaling study: every (size, data) run is trained and scored on the same held-out material."""

import json
import math
from pathlib import Path

import pytest
import torch

from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining, parameter_count, standardize
from modeling.ml.lsm.pretrain import (
    PretrainSettings,
    channel_statistics,
    load_pretrained,
    pretrain_with,
    simulated_windows,
)
from modeling.ml.lsm.replicates import replicates
from modeling.ml.lsm.scaling import (
    ScalingSettings,
    held_out_loss,
    run_steps,
    scaling_study,
    size_overrides,
)


def test_sizes_are_named_or_width_by_depth():
    assert size_overrides("small") == ("small", {})
    named, overrides = size_overrides("128x3")
    config = LSMConfig.named(named, **overrides)
    assert (config.dim, config.depth, config.heads, config.patch_minutes) == (128, 3, 8, 60)
    with pytest.raises(ValueError, match="multiple of 16"):
        size_overrides("40x2")
    with pytest.raises(ValueError, match="unknown size"):
        size_overrides("huge")


def test_steps_grow_with_the_data_at_a_fixed_number_of_passes():
    fixed = ScalingSettings(steps=4000, batch_size=32)
    assert [run_steps(fixed, windows) for windows in (160, 640, 2560)] == [4000, 4000, 4000]
    passes = ScalingSettings(steps=4000, passes=200, batch_size=32)
    assert [run_steps(passes, windows) for windows in (160, 640, 2560)] == [1000, 4000, 16000]
    assert run_steps(ScalingSettings(passes=0.01, batch_size=32), 20) == 1


@pytest.mark.slow
def test_a_small_study_writes_a_table_and_a_figure(tmp_path):
    settings = ScalingSettings(
        sizes=["32x1", "64x1"],
        windows=[20, 40],
        passes=4.0,
        batch_size=8,
        held_out_participants=5,
        probe_participants=60,
        device="cpu",
    )
    results = scaling_study(settings, tmp_path)
    assert [(r["size"], r["pretraining_windows"]) for r in results] == [
        ("32x1", 16),
        ("32x1", 32),
        ("64x1", 16),
        ("64x1", 32),
    ]
    config = LSMConfig.named("tiny", **size_overrides("32x1")[1], patch_minutes=10, patch_channels=9)
    assert [r["steps"] for r in results] == [10, 20, 10, 20]
    assert results[0]["parameters"] == parameter_count(LSMForMaskedPretraining(config))
    assert results[2]["parameters"] > results[0]["parameters"]
    assert all(result["held_out_loss"] > 0 and 0 <= result["mean_probe_auroc"] <= 1 for result in results)
    assert all(
        0 <= result["tasks_at_least_handcrafted"] <= 32 and result["pretraining_cpu_seconds"] > 0 for result in results
    )
    assert json.loads((tmp_path / "runs" / "32x1-20" / "model" / "config.json").read_text())["patch_minutes"] == 10
    assert (tmp_path / "scaling.md").read_text().count("\n| 32x1 |") == 2
    assert json.loads((tmp_path / "scaling.json").read_text()) == results
    html = (tmp_path / "scaling.html").read_text()
    assert 'src="plotly.min.js"' in html and "held-out reconstruction loss" in html


@pytest.mark.slow
def test_the_held_out_loss_is_in_the_held_out_days_units_whatever_the_model_s_normalization(tmp_path):
    """With the model's SDs equal to the held-out days' own, the loss is the model's own masked loss; with SDs twice
    as large (errors read in units twice as wide), four times it."""
    settings = PretrainSettings(participants=10, days=2, steps=2, batch_size=4, patch_minutes=10, patch_channels=9)
    model_dir = Path(pretrain_with(settings, output_dir=tmp_path / "run", device="cpu")["model_dir"])
    held = simulated_windows(participants=6, days=2, seed=77)
    _, common = channel_statistics(held.values, held.observed)
    normalization = json.loads((model_dir / "normalization.json").read_text())
    losses = []
    for factor in (1.0, 2.0):
        normalization["std"] = (common * factor).tolist()
        (model_dir / "normalization.json").write_text(json.dumps(normalization))
        losses.append(held_out_loss(model_dir, held.values, held.observed, "cpu", seed=5))
    model, mean, std = load_pretrained(model_dir)
    observed = torch.tensor(held.observed)
    with torch.no_grad():
        own = model(
            standardize(torch.tensor(held.values), observed, mean, std),
            observed,
            generator=torch.Generator().manual_seed(5),
        ).loss
    assert losses[1] == pytest.approx(float(own) * 4, rel=1e-4)
    assert losses[0] != pytest.approx(losses[1])


def _finished_study(folder, probe, loss):
    """A finished study's scaling.json: probe AUROC and loss per (size, windows) from the given functions."""
    folder.mkdir()
    results = [
        {
            "size": size,
            "parameters": parameters,
            "pretraining_windows": windows,
            "steps": windows * 4,
            "held_out_loss": loss(parameters, windows),
            "mean_probe_auroc": probe(parameters, windows),
            "mean_probe_pearson_r": probe(parameters, windows) - 0.2,
            "mean_handcrafted_auroc": 0.72,
            "tasks_at_least_handcrafted": 20,
            "pretraining_cpu_seconds": 60.0,
            "load_average": [1.0, 1.0, 1.0],
        }
        for size, parameters in (("16x1", 10_000), ("32x1", 30_000))
        for windows in (128, 512, 2048)
    ]
    (folder / "scaling.json").write_text(json.dumps(results))
    return folder


def test_replicated_studies_average_each_cell_and_judge_each_step_against_their_disagreement(tmp_path):
    def loss(parameters, windows):
        return 1.0 / math.log(parameters) + 1.0 / math.log(windows)

    def probe_of(noise):  # the probe falls by 0.05 from 512 to 2,048 windows for the small size only
        return lambda parameters, windows: (
            0.75
            + noise * (windows == 512)
            - (0.05 if (parameters, windows) == (10_000, 2048) else 0.0)
            - (abs(noise) / 4 if (parameters, windows) == (30_000, 128) else 0.0)  # a little lower in both
        )

    first = _finished_study(tmp_path / "seed0", probe_of(0.004), loss)
    second = _finished_study(tmp_path / "seed1", probe_of(-0.004), loss)
    summary = replicates(studies=[first, second], output_dir=tmp_path / "combined")

    cell = next(c for c in summary["cells"] if (c["size"], c["pretraining_windows"]) == ("16x1", 512))
    assert cell["mean_probe_auroc_replicates"] == pytest.approx([0.754, 0.746])
    assert cell["mean_probe_auroc"] == pytest.approx(0.75)
    steps = {(step["from"], step["to"]): step for step in summary["steps"]}
    assert len(steps) == 2 * 2 + 3  # two data steps per size, one size step per data size
    fall = steps[("16x1 on 512", "16x1 on 2,048")]["mean_probe_auroc"]
    assert fall["mean"] == pytest.approx(-0.05) and fall["worse_in_every_study"] and fall["worse_beyond_noise"]
    wobble = steps[("16x1 on 128", "16x1 on 512")]["mean_probe_auroc"]  # +0.004 in one study, -0.004 in the other
    assert wobble["mean"] == pytest.approx(0.0) and not wobble["worse_in_every_study"]
    assert not wobble["worse_beyond_noise"] and not wobble["better_beyond_noise"]
    dip = steps[("16x1 on 128", "32x1 on 128")]["mean_probe_auroc"]
    assert dip["mean"] == pytest.approx(-0.001) and dip["worse_in_every_study"] and not dip["worse_beyond_noise"]
    assert all(step["held_out_loss"]["mean"] < 0 for step in summary["steps"])
    assert summary["step_sd"]["mean_probe_auroc"] > 0
    text = (tmp_path / "combined" / "replicates.md").read_text()
    assert "| data | 16x1 on 512 | 16x1 on 2,048 | 1, 2 |" in text and "worse beyond noise" in text
    assert "within noise (worse in all 2)" in text
    assert "| 1.0 + 1.0 | 1.0, 1.0 |" in text  # each study's CPU-minutes and load after its run
    assert 'src="plotly.min.js"' in (tmp_path / "combined" / "replicates.html").read_text()


def test_a_replicate_may_run_part_of_the_grid_and_nothing_outside_it(tmp_path):
    def flat(parameters, windows):
        return 0.5

    def rising(parameters, windows):
        return 0.7 + windows / 100_000

    first = _finished_study(tmp_path / "a", rising, flat)
    second = _finished_study(tmp_path / "b", rising, flat)
    results = json.loads((second / "scaling.json").read_text())
    (second / "scaling.json").write_text(json.dumps([r for r in results if r["pretraining_windows"] < 2048]))
    summary = replicates(studies=[first, second], output_dir=tmp_path / "out")
    cells = {(c["size"], c["pretraining_windows"]): c for c in summary["cells"]}
    assert cells[("16x1", 2048)]["studies"] == [0] and cells[("16x1", 512)]["studies"] == [0, 1]
    steps = {(step["from"], step["to"]): step for step in summary["steps"]}
    assert steps[("16x1 on 512", "16x1 on 2,048")]["studies"] == [0]
    assert steps[("16x1 on 128", "16x1 on 512")]["mean_probe_auroc"]["differences"] == pytest.approx([0.00384] * 2)
    assert summary["degrees_of_freedom"] == 2 + 2  # a data step per size and a size step per data size of both
    assert summary["step_sd"]["mean_probe_auroc"] == 0  # the studies agree exactly: no noise, so no verdict
    assert not any(step["mean_probe_auroc"]["better_beyond_noise"] for step in summary["steps"])

    results[0]["size"] = "8x1"  # a size the first study did not run
    (second / "scaling.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="not part of"):
        replicates(studies=[first, second], output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="at least two"):
        replicates(studies=[first], output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="named twice"):
        replicates(studies=[first, tmp_path / "a" / ".." / "a"], output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="whole grid"):  # the first study must run it all
        replicates(studies=[second, first], output_dir=tmp_path / "out")


def test_a_study_may_come_in_parts_of_one_seed_and_a_grid_may_start_at_a_larger_data_size(tmp_path):
    def loss(parameters, windows):
        return 1.0 / math.log(parameters) + 1.0 / math.log(windows)

    def probe_of(noise):  # the larger size falls on 128 windows; the probe rises with data elsewhere
        return lambda parameters, windows: (
            0.7 + windows / 100_000 + noise - (0.03 if windows == 128 and parameters > 10_000 else 0)
        )

    studies = []
    for seed, noise in ((0, 0.002), (1, -0.002)):
        whole = _finished_study(tmp_path / f"seed{seed}", probe_of(noise), loss)
        results = json.loads((whole / "scaling.json").read_text())
        top = tmp_path / f"seed{seed}-top"  # 8,192 windows, run later by its own command with fewer passes
        top.mkdir()
        added = [
            {
                **row,
                "pretraining_windows": 8192,
                "steps": 8192,
                "held_out_loss": loss(row["parameters"], 8192),
                "mean_probe_auroc": probe_of(noise)(row["parameters"], 8192),
                "seed": seed,
            }
            for row in results
            if row["pretraining_windows"] == 2048
        ]
        (top / "scaling.json").write_text(json.dumps(added))
        studies.append([whole, top])

    full = replicates(studies=studies, output_dir=tmp_path / "all")
    assert len(full["cells"]) == 2 * 4
    assert any(step["mean_probe_auroc"]["worse_in_every_study"] for step in full["steps"])  # on 128 windows
    top = next(c for c in full["cells"] if (c["size"], c["pretraining_windows"]) == ("32x1", 8192))
    assert top["studies"] == [0, 1] and top["steps"] == [8192]

    from_512 = replicates(studies=studies, output_dir=tmp_path / "from-512", windows=[512, 2048, 8192])
    assert {c["pretraining_windows"] for c in from_512["cells"]} == {512, 2048, 8192}
    assert not any(step["mean_probe_auroc"]["worse_in_every_study"] for step in from_512["steps"])
    assert all(step["held_out_loss"]["mean"] < 0 for step in from_512["steps"])
    text = (tmp_path / "from-512" / "replicates.md").read_text()
    assert f"`{studies[0][0]} + {studies[0][1]}`" in text and "| 8,192 | 8,192 |" in text

    with pytest.raises(ValueError, match="named twice"):
        replicates(studies=[studies[0], [studies[0][1], studies[1][0]]], output_dir=tmp_path / "out")
    again = tmp_path / "again"  # the same cells in a second folder of the study
    again.mkdir()
    (again / "scaling.json").write_text((studies[0][0] / "scaling.json").read_text())
    with pytest.raises(ValueError, match="a study runs a cell once"):
        replicates(studies=[[studies[0][0], again], studies[1]], output_dir=tmp_path / "out")
    mixed = json.loads((studies[1][1] / "scaling.json").read_text())
    mixed[0]["seed"] = 0
    (studies[1][1] / "scaling.json").write_text(json.dumps(mixed))
    (studies[1][0] / "scaling.json").write_text(
        json.dumps([{**row, "seed": 1} for row in json.loads((studies[1][0] / "scaling.json").read_text())])
    )
    with pytest.raises(ValueError, match="one study is one seed"):
        replicates(studies=studies, output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="has no run on"):
        replicates(studies=[studies[0], [tmp_path / "seed1"]], output_dir=tmp_path / "out", windows=[64])


def test_the_command_joins_a_study_s_parts_with_a_plus_and_names_a_missing_folder(tmp_path, capsys):
    from modeling.ml.__main__ import main

    def loss(parameters, windows):
        return 1.0 / math.log(parameters) + 1.0 / math.log(windows)

    studies = []
    for seed, noise in ((0, 0.002), (1, -0.002)):
        whole = _finished_study(tmp_path / f"seed{seed}", lambda p, w, n=noise: 0.7 + w / 100_000 + n, loss)
        top = tmp_path / f"seed{seed}-top"
        top.mkdir()
        rows = json.loads((whole / "scaling.json").read_text())
        added = [{**r, "pretraining_windows": 8192, "held_out_loss": loss(r["parameters"], 8192)} for r in rows]
        top_rows = [r for r in added if r["steps"] == 2048 * 4]  # one 8,192-window run per size
        (top / "scaling.json").write_text(json.dumps(top_rows if seed == 0 else top_rows[:1]))
        studies.append(f"{whole}+{top}")

    output = tmp_path / "combined"
    main(["lsm", "scaling-replicates", "--studies", *studies, "--windows", "512", "8192", "--output", str(output)])
    cells = {
        (c["size"], c["pretraining_windows"]): c["studies"]
        for c in json.loads((output / "replicates.json").read_text())["cells"]
    }
    assert cells == {("16x1", 512): [0, 1], ("32x1", 512): [0, 1], ("16x1", 8192): [0, 1], ("32x1", 8192): [0]}
    assert "| 8,192 |" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="none of them empty"):
        main(["lsm", "scaling-replicates", "--studies", studies[0], f"{studies[1]}+", "--output", str(output)])
    (tmp_path / "seed1-top" / "scaling.json").write_text('[{"size": "16x1"')  # a study's table cut short
    with pytest.raises(SystemExit, match=r"seed1-top/scaling.json is not a finished study's table"):
        main(["lsm", "scaling-replicates", "--studies", *studies, "--output", str(output)])
    with pytest.raises(SystemExit, match=r"error: .*seed1-gone has no scaling.json"):
        main(
            [
                "lsm",
                "scaling-replicates",
                "--studies",
                studies[0],
                f"{tmp_path / 'seed1-gone'}",
                "--output",
                str(output),
            ]
        )
