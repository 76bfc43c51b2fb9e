"""The wearable foundation model: a ViT masked autoencoder over (channels × minutes) day windows.

In the style of LSM-1/LSM-2: patches of ``patch_minutes`` × ``patch_channels`` are embedded with
2D sine-cosine positions (channel group, time); the encoder sees only the visible patches (padded
to the longest in the batch, padding excluded from attention); a light decoder reconstructs every
patch; the loss counts only artificially masked patches, and within them only observed minutes,
so a genuinely missing value is never a target. A checkpoint is a ``PreTrainedModel`` directory.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from modeling.ml.common.init import xavier_init
from modeling.ml.lsm.masking import make_mask, patch_missing

SIZES = {
    # name: (dim, depth, heads, decoder_dim, decoder_depth, patch_minutes, patch_channels)
    "tiny": (64, 2, 4, 64, 1, 60, 1),
    "small": (256, 6, 8, 128, 2, 10, 1),
    "base": (768, 12, 12, 256, 4, 10, 1),
    "large": (1024, 24, 16, 512, 8, 10, 1),
}


class PatchGeometry:
    """How a config's (channels x minutes) window is cut into patches; shared by every config with a patch encoder."""

    # Set by the config's __init__ (annotations only: no class attribute, no dataclass field).
    channels: int
    minutes: int
    patch_minutes: int
    patch_channels: int

    @property
    def channel_groups(self) -> int:
        return self.channels // self.patch_channels

    @property
    def time_patches(self) -> int:
        return self.minutes // self.patch_minutes

    @property
    def patches(self) -> int:
        return self.channel_groups * self.time_patches

    @property
    def patch_values(self) -> int:
        return self.patch_channels * self.patch_minutes


class LSMConfig(PatchGeometry, PretrainedConfig):  # type: ignore[no-untyped-call]  # PretrainedConfig.__init_subclass__ is unannotated
    model_type = "healthagent_lsm"

    def __init__(
        self,
        channels: int = 27,
        minutes: int = 1440,
        patch_minutes: int = 60,
        patch_channels: int = 1,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        mlp_ratio: float = 4.0,
        mask_ratio: float = 0.8,
        mask_strategy: str = "aim",
        dropout: float = 0.0,
        size: str = "tiny",
        decoder_attention: str = "self",
        calendar_features: bool = False,
        **kwargs: Any,
    ):
        # decoder_attention is "self" by default: how checkpoints saved before "cross" existed load.
        super().__init__(**kwargs)
        if minutes % patch_minutes or channels % patch_channels:
            raise ValueError("patch sizes must divide the window (minutes) and the channels")
        self.channels, self.minutes, self.patch_minutes, self.patch_channels = (
            channels,
            minutes,
            patch_minutes,
            patch_channels,
        )
        self.dim, self.depth, self.heads = dim, depth, heads
        self.decoder_dim, self.decoder_depth, self.mlp_ratio = decoder_dim, decoder_depth, mlp_ratio
        self.mask_ratio, self.mask_strategy, self.dropout, self.size = mask_ratio, mask_strategy, dropout, size
        if decoder_attention not in ("self", "cross"):
            raise ValueError(
                "decoder_attention is 'self' (MAE: every patch attends to every patch) or 'cross' (CrossMAE)"
            )
        self.decoder_attention = decoder_attention
        self.calendar_features = calendar_features  # add time-of-day and day-of-week features to every patch

    @classmethod
    def named(cls, size: str, **overrides: Any) -> "LSMConfig":
        dim, depth, heads, decoder_dim, decoder_depth, patch_minutes, patch_channels = SIZES[size]
        # Named sizes decode with CrossMAE's cross-attention: about 1.9x faster tiny training at a held-out
        # loss within 3 % of MAE's full self-attention decoder (300 steps, same data; see the issue note).
        values = {
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "decoder_dim": decoder_dim,
            "decoder_depth": decoder_depth,
            "patch_minutes": patch_minutes,
            "patch_channels": patch_channels,
            "size": size,
            "decoder_attention": "cross",
        }
        return cls(**{**values, **overrides})


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows * cols, dim) fixed 2D sine-cosine positions: half the features for each axis."""

    def axis(positions: torch.Tensor, size: int) -> torch.Tensor:
        frequencies = 1.0 / 10000 ** (torch.arange(size // 2, dtype=torch.float32) / (size // 2))
        angles = positions[:, None] * frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    row, col = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij"
    )
    return torch.cat([axis(row.reshape(-1), dim // 2), axis(col.reshape(-1), dim // 2)], dim=1)


class Block(nn.Module):
    """Pre-norm transformer block; attention through F.scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        )
        mask = None if key_padding is None else ~key_padding[:, None, None, :]  # (batch, 1, 1, tokens): True = attend
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class CrossBlock(nn.Module):
    """A CrossMAE decoder block (Fu et al., 2024): the masked patches' queries attend only to the
    visible patches' encodings, never to each other. At an 80 % mask ratio the decoder's attention
    costs about a sixth of MAE's full self-attention, and its MLP runs on the masked patches only."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm_query, self.norm_context, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.query, self.key_value, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_padding: torch.Tensor) -> torch.Tensor:
        batch, queries, dim = x.shape
        head_dim = dim // self.heads
        q = self.query(self.norm_query(x)).reshape(batch, queries, self.heads, head_dim).transpose(1, 2)
        k, v = (
            self.key_value(self.norm_context(context))
            .reshape(batch, -1, 2, self.heads, head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=~context_padding[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, queries, dim))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


# The encoder's parameter names, as prefixes of a state dict: another model with a patch encoder loads these.
ENCODER_PARAMETERS = ("embed.", "position", "weekday_embedding.", "time_of_day.", "encoder.", "encoder_norm.")
# The config fields that must agree for those weights to fit.
ENCODER_ARCHITECTURE = (
    "channels",
    "minutes",
    "patch_minutes",
    "patch_channels",
    "dim",
    "depth",
    "heads",
    "mlp_ratio",
    "calendar_features",
)


class PatchEncoderConfig(Protocol):
    """What :class:`PatchEncoderMixin` reads from its config: an LSMConfig or a SensorLMConfig."""

    dim: int
    depth: int
    heads: int
    mlp_ratio: float
    dropout: float
    calendar_features: bool
    patch_minutes: int
    patch_channels: int

    @property
    def channel_groups(self) -> int: ...
    @property
    def time_patches(self) -> int: ...
    @property
    def patches(self) -> int: ...
    @property
    def patch_values(self) -> int: ...


class PatchEncoderMixin:
    """The ViT encoder over (channels x minutes) patches, shared by the foundation model and SensorLM's sensor
    tower. Its parameter names are the checkpoint's (:data:`ENCODER_PARAMETERS`), so either loads the other's."""

    # Provided by the nn.Module (a PreTrainedModel or a SensorTower) the mixin runs on.
    config: PatchEncoderConfig
    register_buffer: Callable[..., None]
    position: torch.Tensor  # the buffer registered in build_patch_encoder

    def build_patch_encoder(self, config: PatchEncoderConfig) -> None:
        self.embed = nn.Linear(config.patch_values, config.dim)
        # Fixed positions, saved with the weights: from_pretrained then restores them like any tensor.
        self.register_buffer("position", sincos_2d(config.channel_groups, config.time_patches, config.dim))
        if config.calendar_features:
            self.weekday_embedding = nn.Embedding(7, config.dim)
            self.time_of_day = nn.Linear(2, config.dim)  # from a 24-hour sine and cosine of each patch's middle minute
        self.encoder = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.encoder_norm = nn.LayerNorm(config.dim)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, minutes) -> (batch, patches, patch_values), channel-major patch order."""
        c = self.config
        batch = x.shape[0]
        grouped = x.reshape(batch, c.channel_groups, c.patch_channels, c.time_patches, c.patch_minutes)
        return grouped.permute(0, 1, 3, 2, 4).reshape(batch, c.patches, c.patch_values)

    def calendar(self, weekday: torch.Tensor | None) -> torch.Tensor:
        """(batch or 1, patches, dim) time-of-day and day-of-week features; 0 when the config has none.
        Time of day is also implicit in the time position; this gives it the 24-hour period outright."""
        c = self.config
        if not c.calendar_features:
            return torch.zeros((), device=self.position.device)
        middle = (
            (torch.arange(c.time_patches, device=self.position.device) + 0.5) * c.patch_minutes / 1440 * 2 * torch.pi
        )
        clock: torch.Tensor = self.time_of_day(torch.stack([middle.sin(), middle.cos()], dim=1)).repeat(
            c.channel_groups, 1
        )[None]  # (1, patches, dim)
        if weekday is None:
            return clock
        with_weekday: torch.Tensor = clock + self.weekday_embedding(weekday.long())[:, None, :]
        return with_weekday

    def encode(
        self, tokens: torch.Tensor, hidden: torch.Tensor, weekday: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the tokens where ``hidden`` is False. Returns (encoded, kept indices, padding)."""
        visible_counts = (~hidden).sum(dim=1)
        keep = int(visible_counts.max().clamp(min=1))
        order = hidden.to(torch.int8).argsort(dim=1, stable=True)[:, :keep]  # visible first, in position order
        padding = torch.arange(keep, device=tokens.device)[None, :] >= visible_counts[:, None]  # (batch, keep)
        embedded = self.embed(tokens) + self.position + self.calendar(weekday)
        x = torch.gather(embedded, 1, order[..., None].expand(-1, -1, self.config.dim))
        for block in self.encoder:
            x = block(x, key_padding=padding)
        return self.encoder_norm(x), order, padding

    @torch.no_grad()
    def token_grid(
        self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen patch encodings on the full (channel group x time) grid: (batch, patches, dim), zeros where a
        patch had no observed minute, and (batch, patches) True where it had. What prediction heads read."""
        values = torch.where(observed, values, torch.zeros_like(values))
        missing = patch_missing(observed, self.config.patch_channels, self.config.patch_minutes)
        encoded, order, padding = self.encode(self.patchify(values), missing, weekday)
        grid = encoded.new_zeros(values.shape[0], self.config.patches, self.config.dim)
        grid.scatter_(1, order[..., None].expand(-1, -1, self.config.dim), encoded.masked_fill(padding[..., None], 0.0))
        return grid, ~missing


@dataclass
class LSMOutput:
    loss: torch.Tensor | None
    reconstruction: torch.Tensor  # (batch, patches, patch_values), standardized units
    masked: torch.Tensor  # (batch, patches) the encoder's mask
    missing: torch.Tensor  # (batch, patches) patches without any observed value


class LSMForMaskedPretraining(PatchEncoderMixin, PreTrainedModel):  # type: ignore[no-untyped-call]  # PreTrainedModel.__init_subclass__ is unannotated
    config_class = LSMConfig
    base_model_prefix = "lsm"
    main_input_name = "values"
    config: LSMConfig
    decoder_position: torch.Tensor  # buffer

    def __init__(self, config: LSMConfig):
        super().__init__(config)
        self.build_patch_encoder(config)
        self.register_buffer(
            "decoder_position", sincos_2d(config.channel_groups, config.time_patches, config.decoder_dim)
        )
        self.to_decoder = nn.Linear(config.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        decoder_block = CrossBlock if config.decoder_attention == "cross" else Block
        self.decoder = nn.ModuleList(
            decoder_block(config.decoder_dim, max(1, config.heads // 2), config.mlp_ratio, config.dropout)
            for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(config.decoder_dim)
        self.head = nn.Linear(config.decoder_dim, config.patch_values)
        self.post_init()  # type: ignore[no-untyped-call]  # PreTrainedModel.post_init is unannotated

    def _init_weights(self, module: nn.Module) -> None:
        xavier_init(module)
        if isinstance(module, LSMForMaskedPretraining):
            nn.init.normal_(module.mask_token, std=0.02)

    def forward(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        *,
        masked: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        weekday: torch.Tensor | None = None,
    ) -> LSMOutput:
        """``values`` (batch, channels, minutes), standardized with NaN or anything where ``observed`` is False;
        ``weekday`` (batch,) 0 = Monday, used when the config has calendar features."""
        c = self.config
        values = torch.where(observed, values, torch.zeros_like(values))
        tokens = self.patchify(values)
        token_observed = self.patchify(observed.to(values.dtype)) > 0  # (batch, patches, patch_values)
        missing = patch_missing(observed, c.patch_channels, c.patch_minutes)
        if masked is None:
            masked = make_mask(
                c.mask_strategy, missing, c.mask_ratio, channel_groups=c.channel_groups, generator=generator
            )
        encoded, order, padding = self.encode(tokens, masked, weekday)
        if c.decoder_attention == "cross":
            reconstruction = self._decode_masked(tokens, masked, encoded, order, padding)
        else:
            reconstruction = self._decode_all(tokens, masked, encoded, order, padding)

        targets = (masked & ~missing)[..., None] & token_observed  # artificially masked, observed minutes only
        squared = (reconstruction - tokens) ** 2
        loss = (squared * targets).sum() / targets.sum().clamp(min=1)
        return LSMOutput(loss=loss, reconstruction=reconstruction, masked=masked, missing=missing)

    def _decode_all(
        self,
        tokens: torch.Tensor,
        masked: torch.Tensor,
        encoded: torch.Tensor,
        order: torch.Tensor,
        padding: torch.Tensor,
    ) -> torch.Tensor:
        """MAE: mask tokens fill the hidden positions and the decoder self-attends over every patch."""
        c = self.config
        decoder_input = self.mask_token.expand(tokens.shape[0], c.patches, c.decoder_dim).clone()
        projected = self.to_decoder(encoded).masked_fill(padding[..., None], 0.0)
        decoder_input.scatter_(1, order[..., None].expand(-1, -1, c.decoder_dim), projected)
        decoder_input = (
            torch.where(masked[..., None], self.mask_token.expand_as(decoder_input), decoder_input)
            + self.decoder_position
        )
        x = decoder_input
        for block in self.decoder:
            x = block(x)
        reconstruction: torch.Tensor = self.head(self.decoder_norm(x))  # (batch, patches, patch_values)
        return reconstruction

    def _decode_masked(
        self,
        tokens: torch.Tensor,
        masked: torch.Tensor,
        encoded: torch.Tensor,
        order: torch.Tensor,
        padding: torch.Tensor,
    ) -> torch.Tensor:
        """CrossMAE: only the masked patches are decoded, by cross-attention to the visible ones.
        Visible patches are returned as they were given."""
        c = self.config
        batch = tokens.shape[0]
        positions = self.decoder_position.expand(batch, -1, -1)
        context = self.to_decoder(encoded) + torch.gather(positions, 1, order[..., None].expand(-1, -1, c.decoder_dim))
        masked_counts = masked.sum(dim=1)
        queries = int(masked_counts.max().clamp(min=1))
        query_order = (
            (~masked).to(torch.int8).argsort(dim=1, stable=True)[:, :queries]
        )  # masked first, in position order
        x = self.mask_token + torch.gather(positions, 1, query_order[..., None].expand(-1, -1, c.decoder_dim))
        for block in self.decoder:
            x = block(x, context, padding)
        predicted = self.head(
            self.decoder_norm(x)
        )  # (batch, queries, patch_values); rows past a window's count are padding
        reconstruction = tokens.clone()
        reconstruction.scatter_(1, query_order[..., None].expand(-1, -1, c.patch_values), predicted.to(tokens.dtype))
        return torch.where(masked[..., None], reconstruction, tokens)

    def pool(self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, dim): the encoder over every observed patch (gaps attention-masked), mean-pooled. Differentiable."""
        values = torch.where(observed, values, torch.zeros_like(values))
        missing = patch_missing(observed, self.config.patch_channels, self.config.patch_minutes)
        encoded, _, padding = self.encode(self.patchify(values), missing, weekday)
        weights = (~padding).to(encoded.dtype)[..., None]
        return (encoded * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    @property
    def embedding_width(self) -> int:
        """The width of :meth:`embed_windows`: one ``dim`` vector per channel group."""
        return self.config.channel_groups * self.config.dim

    def _by_channel(self, grid: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """(batch, channel_groups * dim): a token grid mean-pooled per channel group over its observed patches; NaN
        for a group without any (a device that lacks the channel): no value a worn channel could have, so a probe
        imputes it (:func:`modeling.ml.lsm.evaluate.probe_pipeline`) instead of reading 0 as a pattern."""
        c = self.config
        weights = seen.to(grid.dtype).reshape(grid.shape[0], c.channel_groups, c.time_patches, 1)
        grouped = grid.reshape(grid.shape[0], c.channel_groups, c.time_patches, c.dim)
        count = weights.sum(dim=2)
        pooled = (grouped * weights).sum(dim=2) / count.clamp(min=1)
        return pooled.masked_fill(count == 0, float("nan")).flatten(1)

    @torch.no_grad()
    def embed_windows(
        self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(batch, :attr:`embedding_width`) frozen embeddings for probes: the last layer mean-pooled per channel group,
        concatenated (NaN for a group the window never observed). The grand mean over every patch (:meth:`pool`) mixes the 27 channels into one vector; probes on
        it lost to hand-crafted features on the tasks one channel's level or the night's sleep decides, and probes on
        this won (issue 24, ``docs/results/lsm-tiny/ablations.md``)."""
        return self._by_channel(*self.token_grid(values, observed, weekday))

    @torch.no_grad()
    def embed_window_variants(
        self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every frozen embedding the probe study compares (issue 24), from one pass over every observed patch:

        * ``input``: the encoder's input tokens (patch embedding + positions), mean-pooled;
        * ``layer1`` .. ``layerN``: each encoder block's output, mean-pooled (``layerN`` before the final norm);
        * ``last``: the final normed output, mean-pooled (the grand mean, as :meth:`pool`);
        * ``last_by_channel``: the final output mean-pooled per channel group, concatenated (groups x dim): what
          :meth:`embed_windows` gives. The grand mean mixes 27 channels into one vector; this keeps which channel a
          pattern came from.
        """
        c = self.config
        values = torch.where(observed, values, torch.zeros_like(values))
        missing = patch_missing(observed, c.patch_channels, c.patch_minutes)
        tokens = self.patchify(values)
        visible_counts = (~missing).sum(dim=1)
        keep = int(visible_counts.max().clamp(min=1))
        order = missing.to(torch.int8).argsort(dim=1, stable=True)[:, :keep]
        padding = torch.arange(keep, device=tokens.device)[None, :] >= visible_counts[:, None]
        weights = (~padding).to(tokens.dtype)[..., None]

        def mean(x: torch.Tensor) -> torch.Tensor:
            return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

        embedded = self.embed(tokens) + self.position + self.calendar(weekday)
        x = torch.gather(embedded, 1, order[..., None].expand(-1, -1, c.dim))
        variants = {"input": mean(x)}
        for number, block in enumerate(self.encoder, start=1):
            x = block(x, key_padding=padding)
            variants[f"layer{number}"] = mean(x)
        last = self.encoder_norm(x)
        variants["last"] = mean(last)
        grid = last.new_zeros(values.shape[0], c.patches, c.dim)
        grid.scatter_(1, order[..., None].expand(-1, -1, c.dim), last.masked_fill(padding[..., None], 0.0))
        variants["last_by_channel"] = self._by_channel(grid, ~missing)
        return variants


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def standardize(
    values: torch.Tensor, observed: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, clip: float = 5.0
) -> torch.Tensor:
    """Per-channel standardization with clipping (±5 SD), as in the published models."""
    scaled = (values - mean[None, :, None]) / std[None, :, None]
    return torch.where(observed, scaled.clamp(-clip, clip), torch.zeros_like(scaled))
