"""SensorLM's contrastive objectives, across processes: under torchrun every process scores its own sensor windows
against the captions of the whole global batch (and its captions against every window), so the negatives are the
global batch's, as in open_clip's ``ClipLoss`` with ``local_loss`` and ``gather_with_grad`` and in SigLIP.

Features are gathered with an autograd-aware all-gather: the gradient of every process's loss reaches the features
it came from, and DDP's average over processes then gives the gradient of the global batch's mean loss. In one
process both losses are exactly the single-batch ones.
"""

from collections.abc import Callable
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_features(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """((global batch, dim) features of every process in rank order, the offset of this process's rows in them)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features, 0
    from torch.distributed.nn.functional import all_gather  # autograd-aware, unlike dist.all_gather

    # torch leaves all_gather unannotated: it returns one tensor per process, in rank order
    gather = cast(Callable[[torch.Tensor], tuple[torch.Tensor, ...]], all_gather)
    gathered = gather(features.contiguous())
    return torch.cat(gathered), dist.get_rank() * len(features)


def clip_loss(sensor: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: this process's windows (local, dim) against every caption, and its captions against every
    window; the matching pair of row i is global row offset + i."""
    all_sensor, offset = gather_features(sensor)
    all_text, _ = gather_features(text)
    targets = offset + torch.arange(len(sensor), device=sensor.device)
    per_sensor = scale * sensor @ all_text.T  # (local, global)
    per_text = scale * text @ all_sensor.T  # (local, global)
    return (F.cross_entropy(per_sensor, targets) + F.cross_entropy(per_text, targets)) / 2


def siglip_loss(sensor: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Sigmoid loss over every pair of this process's windows with the global batch's captions (+1 for the matching
    pair, -1 for every other), summed and divided by the local batch."""
    all_text, offset = gather_features(text)
    logits = scale * sensor @ all_text.T + bias  # (local, global)
    signs = -torch.ones_like(logits)
    rows = torch.arange(len(sensor), device=sensor.device)
    signs[rows, offset + rows] = 1.0
    return -F.logsigmoid(signs * logits).sum() / len(sensor)
