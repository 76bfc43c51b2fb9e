"""Head specs: validated JSON, parsed out of whatever a proposer writes, rejected with a reason."""

import pytest

from modeling.ml.heads.spec import ARCHITECTURES, HeadSpec, MLPHead, SpecError, parse_spec, spec_schema


def test_a_valid_spec_round_trips_through_its_key():
    spec = parse_spec(
        {"head": {"type": "mlp", "depth": 2, "width": 128}, "training": {"learning_rate": 0.003, "epochs": 40}}
    )
    assert isinstance(spec.head, MLPHead) and spec.head.width == 128 and spec.training.epochs == 40
    assert parse_spec(spec.key()) == spec and HeadSpec.model_validate_json(spec.key()).key() == spec.key()


def test_json_is_found_in_prose_and_code_fences():
    text = 'Here is my proposal, building on {the leaderboard}:\n```json\n{"head": {"type": "attention_pool", "queries": 2}}\n```\nGood luck!'
    assert parse_spec(text).head.queries == 2
    assert parse_spec('{"type": "linear"}').head.type == "linear"  # a bare architecture gets default training
    assert (
        parse_spec(
            'Try {"head": {"type": "temporal_conv", "kernel": 5}, "training": {"epochs": 9}} then {"type": "linear"}'
        ).head.kernel
        == 5
    )
    with pytest.raises(
        SpecError, match="note"
    ):  # braces inside strings do not confuse the scan; unknown keys are refused
        parse_spec('{"head": {"type": "linear"}, "note": "a } and a {"}')


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("I think a bigger MLP would help.", "no JSON object"),
        ('{"head": {"type": "transformer"}}', "head"),
        ('{"head": {"type": "mlp", "depth": 40}}', "head.mlp.depth"),
        ('{"head": {"type": "mlp"}, "training": {"learning_rate": -1}}', "training.learning_rate"),
        ('{"head": {"type": "linear", "width": 3}}', "head.linear.width"),
        ('{"head": {"type": "mlp", "width": 64,}}', "no JSON object"),  # trailing comma: not JSON
        ("", "no JSON object"),
    ],
)
def test_invalid_proposals_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(SpecError, match=reason.replace(".", r"\.")):
        parse_spec(raw)


def test_the_schema_lists_every_architecture():
    schema = spec_schema()
    types = {
        definition["properties"]["type"]["const"]
        for definition in schema["$defs"].values()
        if "type" in definition.get("properties", {})
    }
    assert types == set(ARCHITECTURES)
