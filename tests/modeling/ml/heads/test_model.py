"""Heads built from specs read the frozen token grid and ignore what is not present."""

import pytest
import torch

from modeling.ml.heads.model import build_head
from modeling.ml.heads.spec import parse_spec
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining

SPECS = [
    '{"type": "linear"}',
    '{"type": "mlp", "depth": 2, "normalization": "batch"}',
    '{"type": "attention_pool", "heads": 4, "queries": 2}',
    '{"type": "temporal_conv", "kernel": 5, "layers": 2}',
]


@pytest.mark.parametrize("raw", SPECS)
def test_every_architecture_reads_the_token_grid_and_ignores_absent_patches(raw, windows):
    values, observed = windows
    encoder = LSMForMaskedPretraining(LSMConfig.named("tiny")).eval()
    tokens, present = encoder.token_grid(values, observed)
    assert tokens.shape == (len(values), 27 * 24, 64) and (~present).any() and present.any()
    assert torch.all(tokens[~present] == 0)
    torch.manual_seed(0)
    head = build_head(parse_spec(raw), dim=64, outputs=3, grid=(27, 24)).eval()
    output = head(tokens, present)
    assert output.shape == (len(values), 3) and torch.isfinite(output).all()
    poisoned = tokens.clone()
    poisoned[~present] = 1e3
    torch.testing.assert_close(head(poisoned, present), output)


def test_attention_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="divide"):
        build_head(parse_spec('{"type": "attention_pool", "heads": 3}'), dim=64, outputs=2, grid=(27, 24))
