"""Masking strategies for masked-autoencoder pre-training on (channels × minutes) day windows.

Patches are laid out channel-major: patch ``c * time_patches + t`` covers channel group ``c`` and
time step ``t``. Every strategy returns a boolean ``masked`` of shape (batch, patches): True where
the encoder does not see the patch. ``missing`` marks patches that hold no observed value at all.

Inherited masking (LSM-2's "AIM"): genuinely missing patches count toward the mask ratio and are
never reconstruction targets; the strategy only adds artificial masks on top to reach the ratio.
"""

import torch


def patch_missing(observed: torch.Tensor, patch_channels: int, patch_minutes: int) -> torch.Tensor:
    """(batch, channels, minutes) observed mask -> (batch, patches) True where a patch has no observed value."""
    batch, channels, minutes = observed.shape
    grouped = observed.reshape(
        batch, channels // patch_channels, patch_channels, minutes // patch_minutes, patch_minutes
    )
    return ~grouped.any(dim=(2, 4)).reshape(batch, -1)  # (batch, channel_groups * time_patches)


def random_mask(missing: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    noise = torch.rand(missing.shape, generator=generator, device=missing.device)
    count = round(ratio * missing.shape[1])
    order = noise.argsort(dim=1)
    masked = torch.zeros_like(missing)
    masked.scatter_(1, order[:, :count], True)
    return masked


def temporal_block_mask(
    missing: torch.Tensor, ratio: float, *, channel_groups: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask a contiguous span of time steps across every channel (imputation of gaps, forecasting)."""
    batch, patches = missing.shape
    time_patches = patches // channel_groups
    span = max(1, round(ratio * time_patches))
    starts = torch.randint(0, time_patches - span + 1, (batch,), generator=generator).to(missing.device)
    steps = torch.arange(time_patches, device=missing.device)
    in_span = (steps[None, :] >= starts[:, None]) & (steps[None, :] < starts[:, None] + span)  # (batch, time_patches)
    return in_span.repeat(1, channel_groups)


def channel_mask(
    missing: torch.Tensor, ratio: float, *, channel_groups: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask whole channel groups (whole-channel imputation)."""
    batch, patches = missing.shape
    time_patches = patches // channel_groups
    count = max(1, round(ratio * channel_groups))
    order = torch.rand(batch, channel_groups, generator=generator).argsort(dim=1).to(missing.device)
    chosen = torch.zeros(batch, channel_groups, dtype=torch.bool, device=missing.device)
    chosen.scatter_(1, order[:, :count], True)
    return chosen.repeat_interleave(time_patches, dim=1)


def inherited_mask(missing: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """AIM: missing patches are masked first and count toward ``ratio``; random observed patches make up the rest."""
    batch, patches = missing.shape
    target = round(ratio * patches)
    noise = torch.rand(missing.shape, generator=generator, device=missing.device)
    noise = noise + missing.float() * -2.0  # missing patches sort first
    order = noise.argsort(dim=1)
    counts = torch.maximum(missing.sum(dim=1), torch.full((batch,), target, device=missing.device))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(patches, device=missing.device).expand(batch, -1))
    return ranks < counts[:, None]


def group_inherited_mask(
    missing: torch.Tensor,
    ratio: float,
    *,
    channel_groups: int,
    share: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AIM, with one whole channel group hidden for the whole window first in ``share`` of the windows: so the encoder
    also learns to rebuild a group from the other groups alone (whole-group imputation), which patch-by-patch masking
    never asks when a hidden patch's own group is visible an hour away. The hidden group counts toward ``ratio``; one
    group (channel_groups 1) is plain AIM."""
    if channel_groups < 2:
        return inherited_mask(missing, ratio, generator)
    one_group = channel_mask(missing, 1 / channel_groups, channel_groups=channel_groups, generator=generator)
    chosen = (torch.rand(missing.shape[0], generator=generator) < share).to(missing.device)
    return inherited_mask(missing | (one_group & chosen[:, None]), ratio, generator)


STRATEGIES = ("random", "temporal", "channel", "aim", "aim_group")


def make_mask(
    strategy: str, missing: torch.Tensor, ratio: float, *, channel_groups: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The encoder mask for ``strategy``; missing patches are always masked (they carry no signal)."""
    if strategy == "random":
        masked = random_mask(missing, ratio, generator)
    elif strategy == "temporal":
        masked = temporal_block_mask(missing, ratio, channel_groups=channel_groups, generator=generator)
    elif strategy == "channel":
        masked = channel_mask(missing, ratio, channel_groups=channel_groups, generator=generator)
    elif strategy == "aim":
        masked = inherited_mask(missing, ratio, generator)
    elif strategy == "aim_group":
        masked = group_inherited_mask(missing, ratio, channel_groups=channel_groups, generator=generator)
    else:
        raise ValueError(f"unknown masking strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return masked | missing
