"""``python -m modeling.ml sensorlm ...`` end to end on a very small run."""

import json

import pytest

from modeling.ml.__main__ import main


@pytest.mark.slow
def test_train_then_evaluate_from_the_command_line(tmp_path):
    main(
        [
            "sensorlm",
            "train",
            "--loss",
            "coca",
            "--participants",
            "24",
            "--days",
            "2",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "run"),
        ]
    )
    main(
        [
            "sensorlm",
            "evaluate",
            "--model",
            str(tmp_path / "run" / "model"),
            "--participants",
            "24",
            "--days",
            "2",
            "--bootstrap",
            "5",
            "--caption-days",
            "4",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "report"),
        ]
    )
    report = (tmp_path / "report" / "evaluation.md").read_text()
    assert "load average (1, 5, 15 min) [" in report  # whether anything else heavy ran beside it
    for heading in (
        "Zero-shot activity recognition",
        "Binary groupings",
        "Retrieval among the test days",
        "Captioning",
        "CoCa greedy caption",
        "nearest caption by hand-crafted statistics",
        "linear probe on hand-crafted statistics",
    ):
        assert heading in report
    result = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert result["retrieval"]["chance_r@1"] == pytest.approx(1 / result["retrieval"]["candidates"])
    with pytest.raises(ValueError, match="training seed"):
        main(
            ["sensorlm", "evaluate", "--model", str(tmp_path / "run" / "model"), "--participants", "24", "--seed", "0"]
        )
