"""Calibration in the large of the twin's risks: fitted on a cohort of its own, carried in config.json."""

import numpy as np
import pytest


def test_calibration_matches_predicted_to_observed_events_on_its_cohort_and_travels_with_the_weights(
    tmp_path, tokenizer
):
    import json

    import torch

    from modeling.ml.data.clinical import ENDPOINTS
    from modeling.ml.twin.calibration import calibrate_twin
    from modeling.ml.twin.evaluate import TwinReportSettings, risk_cohort
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel
    from modeling.ml.twin.training import load_twin

    torch.manual_seed(0)
    model = HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save(tmp_path / "tokenizer.json")
    (tmp_path / "training.json").write_text(json.dumps({"seed": 0}))
    settings = TwinReportSettings(participants=60, history_days=200, horizon_days=120, samples=1, seed=9)

    heard = []
    calibration = calibrate_twin(tmp_path, settings, min_events=1, progress=lambda *call: heard.append(call))
    fractions = [fraction for fraction, _ in heard]  # a job's heartbeat: simulating the cohort, then its futures
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and heard[-1][1].startswith("futures of ")
    counted = {name: row for name, row in calibration["endpoints"].items() if row["events"] >= 1 and row["predicted"]}
    assert counted, calibration  # some endpoint had an event in the cohort
    assert all(row["factor"] == 1.0 for name, row in calibration["endpoints"].items() if name not in counted)
    assert any(row["factor"] != 1.0 for row in counted.values())

    loaded, _ = load_twin(tmp_path)
    assert loaded.config.risk_calibration == calibration["factors"]  # in config.json: the site reads it too
    cohort = risk_cohort(loaded, tokenizer, settings, every_other_height=True)  # as it was calibrated
    calibrated = cohort.rollouts.endpoint_risk()[:, 0]
    uncalibrated = cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]
    for name, row in counted.items():
        column, eligible = ENDPOINTS.index(name), ~cohort.prevalent[name]
        events = row["events"] + calibration["endpoints_without_height"].get(name, {"events": 0})["events"]
        # the same cohort and random numbers: calibrated risks sum to the observed events (up to the cap at 1)
        assert calibrated[eligible, column].sum() <= events + 1e-4
        if (uncalibrated[eligible, column] * cohort.rollouts.calibration[eligible, column]).max() < 1.0:
            assert calibrated[eligible, column].sum() == pytest.approx(events, rel=1e-4)
    assert loaded.config.risk_calibration_fit["seed"] == 9 and loaded.config.risk_calibration_fit["horizon_days"] == 120
    # risks read from the diagnosis tokens alone are not what the factors were fitted on: left uncalibrated
    from modeling.ml.twin.risk import calibration_factors

    assert calibration_factors(loaded, ()) is None
    assert calibration_factors(loaded, settings.risk_from_measurements) is not None
    # obesity is read from the weight where the height is known, else from its token: a factor fitted for each, on
    # the two halves of the cohort (every other participant's height withheld)
    obesity = ENDPOINTS.index("obesity")
    halves = calibration["endpoints"]["obesity"], calibration["endpoints_without_height"]["obesity"]
    assert all(half["at_risk"] > 0 for half in halves)  # the halves partition the people at risk:
    assert sum(half["at_risk"] for half in halves) == int((~cohort.prevalent["obesity"]).sum())
    assert loaded.config.risk_calibration_without_height == calibration["without_height"]
    table = calibration_factors(loaded, settings.risk_from_measurements, [True, False])
    assert table is not None and table.shape == (2, len(ENDPOINTS))
    assert table[0, obesity] == calibration["factors"]["obesity"]
    assert table[1, obesity] == calibration["without_height"]["obesity"]
    assert (np.delete(table[0], obesity) == np.delete(table[1], obesity)).all()
    with pytest.raises(ValueError, match="training seed"):
        calibrate_twin(tmp_path, TwinReportSettings(seed=0))
    from modeling.ml.twin.evaluate import twin_report

    with pytest.raises(ValueError, match="calibration cohort"):
        twin_report(tmp_path, TwinReportSettings(seed=9), parts=("risk",))
