"""Prediction heads built from a spec, over the frozen foundation model's patch-token grid.

Every head reads ``tokens`` (batch, patches, dim) in the encoder's channel-major patch order with
``present`` (batch, patches) marking patches that had data, and returns (batch, outputs).
"""

import torch
from torch import nn

from modeling.ml.heads.spec import AttentionPoolHead, HeadSpec, LinearHead, MLPHead, TemporalConvHead

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def masked_mean(tokens: torch.Tensor, present: torch.Tensor, dim: int = 1) -> torch.Tensor:
    weights = present.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=dim) / weights.sum(dim=dim).clamp(min=1)


class PooledHead(nn.Module):
    """Linear or MLP on the mean of the present tokens (the linear head is the probe, trained by gradient descent)."""

    def __init__(self, spec: LinearHead | MLPHead, dim: int, outputs: int):
        super().__init__()
        layers: list[nn.Module] = [
            nn.BatchNorm1d(dim, affine=False)
        ]  # pooled encodings vary little between windows: rescale
        width = dim
        if isinstance(spec, MLPHead):
            for _ in range(spec.depth):
                layers.append(nn.Linear(width, spec.width))
                if spec.normalization == "layer":
                    layers.append(nn.LayerNorm(spec.width))
                elif spec.normalization == "batch":
                    layers.append(nn.BatchNorm1d(spec.width))
                layers += [ACTIVATIONS[spec.activation](), nn.Dropout(spec.dropout)]
                width = spec.width
        layers.append(nn.Linear(width, outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(masked_mean(tokens, present))
        return logits


class AttentionPool(nn.Module):
    """Learned queries attend over the present tokens; their outputs, concatenated, feed a linear layer."""

    def __init__(self, spec: AttentionPoolHead, dim: int, outputs: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(spec.queries, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, spec.heads, dropout=spec.dropout, batch_first=True)
        self.out = nn.Linear(spec.queries * dim, outputs)

    def forward(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        keys = self.norm(tokens)
        queries = self.queries.expand(tokens.shape[0], -1, -1)
        empty = ~present.any(
            dim=1
        )  # a window without data: let it attend to everything (all zeros) rather than to nothing
        padding = ~(present | empty[:, None])
        pooled, _ = self.attention(queries, keys, keys, key_padding_mask=padding, need_weights=False)
        logits: torch.Tensor = self.out(pooled.flatten(1))
        return logits


class TemporalConv(nn.Module):
    """Tokens averaged over channel groups into a sequence of time patches, then 1D convolutions and a masked mean."""

    def __init__(self, spec: TemporalConvHead, dim: int, outputs: int, grid: tuple[int, int]):
        super().__init__()
        self.groups, self.steps = grid
        layers, width = [], dim
        for _ in range(spec.layers):
            layers += [
                nn.Conv1d(width, spec.channels, spec.kernel, padding=spec.kernel // 2),
                ACTIVATIONS[spec.activation](),
                nn.Dropout(spec.dropout),
            ]
            width = spec.channels
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(width, outputs)

    def forward(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        batch, _, dim = tokens.shape
        grid = tokens.reshape(batch, self.groups, self.steps, dim)
        mask = present.reshape(batch, self.groups, self.steps)
        sequence = masked_mean(grid.transpose(1, 2), mask.transpose(1, 2), dim=2)  # (batch, steps, dim)
        step_present = mask.any(dim=1)  # (batch, steps)
        features = self.conv(sequence.transpose(1, 2)).transpose(1, 2)  # (batch, steps, channels)
        logits: torch.Tensor = self.out(masked_mean(features, step_present))
        return logits


def build_head(spec: HeadSpec, *, dim: int, outputs: int, grid: tuple[int, int]) -> nn.Module:
    """The head a spec describes; ``grid`` is (channel groups, time patches) of the token grid."""
    head = spec.head
    if isinstance(head, (LinearHead, MLPHead)):
        return PooledHead(head, dim, outputs)
    if isinstance(head, AttentionPoolHead):
        if dim % head.heads:
            raise ValueError(f"{head.heads} attention heads do not divide the embedding width {dim}")
        return AttentionPool(head, dim, outputs)
    return TemporalConv(head, dim, outputs, grid)
