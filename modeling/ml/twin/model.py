"""HealthFormer: a nanoGPT-style decoder-only transformer over timeline tokens.

Each input token sums a code embedding, a value embedding (the quantile bin, plus a projection of
the bin's standardized center), a modality embedding and a time encoding (age on that day, time
since the previous token, the day's position in weekly to yearly cycles). There are no learned
positions: where a token sits in time is what the time encoding says. Two heads read each position:
the next token over the joint (code, bin) vocabulary, and the waiting time to the next token, an
exponential with rate ``rate`` discretized to whole days (``P(gap = k) = e^{-rate k}(1 - e^{-rate})``),
so same-day tokens (gap 0) have a finite likelihood. Next-token losses are weighted per modality.
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from modeling.ml.twin.cache import Carried, KVCache, SharedPrefixCache, shared_prefix_attention

if TYPE_CHECKING:
    from modeling.ml.twin.tokens import Tokenizer

SIZES = {
    # name: (dim, depth, heads)
    "tiny": (64, 3, 4),
    "small": (256, 6, 8),
    "base": (512, 12, 8),
    "large": (1024, 24, 16),
}
DEFAULT_MODALITY_WEIGHTS = {
    "static": 0.0,
    "lab": 1.0,
    "blood_pressure": 1.0,
    "body_composition": 1.0,
    "cgm": 0.5,
    "wearable_daily": 0.5,
    "diet": 0.3,
    "medication": 1.0,
    "intervention": 0.3,
    "diagnosis": 2.0,
    "endpoint": 3.0,
}
CYCLE_DAYS = (7.0, 30.4, 91.3, 365.25)
TIME_FEATURES = 4 + 2 * len(CYCLE_DAYS)


class HealthFormerConfig(PretrainedConfig):  # type: ignore[no-untyped-call]  # PretrainedConfig.__init_subclass__ is unannotated
    model_type = (
        "healthagent_healthformer"  # the stored format's name (committed weights carry it); the family is "twin"
    )

    def __init__(
        self,
        vocab_size: int = 1,
        codes: int = 1,
        modalities: int = 11,
        bins: int = 24,
        id_code: list[int] | None = None,
        id_bin: list[int] | None = None,
        id_modality: list[int] | None = None,
        id_value: list[float] | None = None,
        dim: int = 64,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        block_size: int = 512,
        size: str = "tiny",
        modality_loss_weights: dict[str, float] | None = None,
        modality_names: list[str] | None = None,
        time_loss_weight: float = 1.0,
        id_treatment: list[int] | None = None,
        treatments: int = 0,
        id_biomarker: list[int] | None = None,
        biomarkers: int = 0,
        treatment_by_level: bool = False,
        level_at_start: bool = False,
        post_start_days: int = 0,
        post_start_loss_weight: float = 1.0,
        risk_calibration: dict[str, float] | None = None,
        risk_calibration_fit: dict[str, Any] | None = None,
        risk_calibration_without_height: dict[str, float] | None = None,
        hazard_endpoints: list[str] | None = None,
        hazard_fit: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.vocab_size, self.codes, self.modalities, self.bins = vocab_size, codes, modalities, bins
        self.id_code, self.id_bin = id_code or [0] * vocab_size, id_bin or [0] * vocab_size
        self.id_modality, self.id_value = id_modality or [0] * vocab_size, id_value or [0.0] * vocab_size
        self.dim, self.depth, self.heads, self.mlp_ratio, self.dropout = dim, depth, heads, mlp_ratio, dropout
        self.block_size, self.size = block_size, size
        self.modality_loss_weights = dict(modality_loss_weights or DEFAULT_MODALITY_WEIGHTS)
        self.modality_names = list(modality_names or DEFAULT_MODALITY_WEIGHTS)
        self.time_loss_weight = time_loss_weight
        self.id_treatment, self.treatments = (
            id_treatment or [0] * vocab_size,
            treatments,
        )  # vocab id -> treatment slot + 1 (0: none)
        # vocab id -> biomarker + 1 (0: not a measurement); 0 biomarkers: no latest-value input (models before it)
        self.id_biomarker, self.biomarkers = id_biomarker or [0] * vocab_size, biomarkers
        # An input per (treatment, biomarker): how far the treatment's effect has ramped times the biomarker's latest
        # value, so an effect that grows with the level (an antihypertensive's) needs no multiplication by the blocks.
        self.treatment_by_level = treatment_by_level
        # The level those inputs multiply: each biomarker's value when the treatment started rather than its latest,
        # which after the start is already the treated one (docs/results/twin-tiny/README.md: the twin predicted a
        # smaller antihypertensive effect the higher the latest reading, where the truth grows with the level).
        self.level_at_start = level_at_start
        if level_at_start and not treatment_by_level:
            raise ValueError(
                "level_at_start chooses the level of the treatment-by-level inputs: it needs treatment_by_level"
            )
        # Next-token losses of the tokens this many days after a treatment start count this many times: the few
        # measurements that show a treatment's effect are a small share of all tokens.
        self.post_start_days, self.post_start_loss_weight = post_start_days, post_start_loss_weight
        # endpoint -> factor on its risk, fitted on a calibration cohort after training (``twin calibrate``)
        self.risk_calibration = dict(risk_calibration or {})
        # how they were fitted: seed, participants, min_events, horizon_days and risk_from_measurements (the factors
        # apply only to risks read the same way)
        self.risk_calibration_fit = dict(risk_calibration_fit or {})
        # endpoint -> factor for participants whose height is unknown, where obesity is read from its diagnosis token
        # rather than from the weight (risk.calibration_factors)
        self.risk_calibration_without_height = dict(risk_calibration_without_height or {})
        # The endpoints read from the hazard head (a per-day rate of each one's first event, ``twin hazard``) rather
        # than from the next-token probabilities, and how the head was fitted (seed, participants, penalties, events).
        self.hazard_endpoints = list(hazard_endpoints or [])
        self.hazard_fit = dict(hazard_fit or {})

    @classmethod
    def named(cls, size: str, tokenizer: "Tokenizer", **overrides: Any) -> "HealthFormerConfig":
        from modeling.ml.twin.tokens import BIOMARKER_NAMES, CODES, MODALITIES, TREATMENTS

        dim, depth, heads = SIZES[size]
        id_treatment = [0] * tokenizer.vocab_size
        for slot, name in enumerate(TREATMENTS):
            for kind in ("intervention", "medication"):
                if f"{kind}:{name}" in dict(CODES):
                    id_treatment[tokenizer.token_id(f"{kind}:{name}")] = slot + 1
        id_biomarker = [0] * tokenizer.vocab_size
        for index, name in enumerate(BIOMARKER_NAMES):
            for token in tokenizer.measurement_ids(name):
                id_biomarker[int(token)] = index + 1
        values = {
            "vocab_size": tokenizer.vocab_size,
            "codes": len(CODES),
            "modalities": len(MODALITIES),
            "bins": tokenizer.bins,
            "id_treatment": id_treatment,
            "treatments": len(TREATMENTS),
            "id_biomarker": id_biomarker,
            "biomarkers": len(BIOMARKER_NAMES),
            "id_code": tokenizer.id_code.tolist(),
            "id_bin": tokenizer.id_bin.tolist(),
            "id_modality": tokenizer.id_modality.tolist(),
            "id_value": tokenizer.id_value.tolist(),
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "size": size,
            "modality_names": list(MODALITIES),
        }
        return cls(**{**values, **overrides})


class Heads(NamedTuple):
    """What the heads read from each position."""

    logits: torch.Tensor  # (..., vocab): the next token
    rate: torch.Tensor  # (...): per-day rate of the waiting time to the next token
    hidden: torch.Tensor  # (..., dim): the normalized state the heads read (the hazard head too: ``hazard``)


HAZARD_STATIC_CODES = ("sex:female", "sex:male", "smoker:yes", "smoker:no")


def hazard_inputs(
    latest_value: torch.Tensor,
    latest_day: torch.Tensor,
    days: torch.Tensor,
    age_years: torch.Tensor,
    static: torch.Tensor,
) -> torch.Tensor:
    """(..., 3 * biomarkers + 2 + 4): a position's own inputs, which the hazard head reads beside the trunk's state:
    each biomarker's latest value, whether it was measured and how long ago (``latest_features``, from the latest
    state: (..., biomarkers) each), the age that day and whether it is known (as ``time_features``: ``days`` (...),
    ``age_years`` at day 0 (...), NaN when unknown) and the static tokens present (``static``, (..., 4), in the
    order of ``HAZARD_STATIC_CODES``)."""
    known = ~torch.isnan(age_years)
    age = torch.where(known, age_years, torch.zeros_like(age_years)) + days.float() / 365.25
    latest = latest_features(latest_value[..., None, :], latest_day[..., None, :], days[..., None])[..., 0, :]
    ages = torch.stack([torch.where(known, (age - 50.0) / 20.0, torch.zeros_like(age)), known.float()], dim=-1)
    return torch.cat([latest, ages, static.float()], dim=-1)


@dataclass
class HealthFormerOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # (batch, tokens, vocab): the next token
    rate: torch.Tensor  # (batch, tokens): per-day rate of the waiting time to the next token
    token_loss: torch.Tensor | None = None
    time_loss: torch.Tensor | None = None


class Block(nn.Module):
    def __init__(self, config: HealthFormerConfig):
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.norm1, self.norm2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.qkv, self.proj = nn.Linear(config.dim, 3 * config.dim), nn.Linear(config.dim, config.dim)
        hidden = int(config.dim * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cache: KVCache | SharedPrefixCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = (
            self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        )
        if cache is not None:  # write this step's keys and values, attend over everything so far
            start = cache.length
            cache.keys[layer][:, :, start : start + tokens] = k
            cache.values[layer][:, :, start : start + tokens] = v
            width = cache.allocated if isinstance(cache, SharedPrefixCache) else start + tokens
            k, v = cache.keys[layer][:, :, :width], cache.values[layer][:, :, :width]
        if isinstance(cache, SharedPrefixCache):
            attended = shared_prefix_attention(q, k, v, mask, cache, layer)
        elif (
            cache is not None and tokens == 1
        ):  # one query per row: two batched matrix products beat the fused kernel on CPU
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (batch, heads, 1, keys)
            attended = (
                torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v
            )  # (batch, heads, 1, head_dim)
        else:
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


def time_features(days: torch.Tensor, previous_day: torch.Tensor, age_years: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, TIME_FEATURES) from days (batch, tokens), the day before the first token (batch,)
    and age at day 0 (batch,), NaN when unknown."""
    days = days.float()
    gap = (days - torch.cat([previous_day[:, None].float(), days[:, :-1]], dim=1)).clamp(min=0)
    known = ~torch.isnan(age_years)
    age = torch.where(known, age_years, torch.zeros_like(age_years))[:, None] + days / 365.25
    features = [
        torch.where(known[:, None], (age - 50.0) / 20.0, torch.zeros_like(age)),
        known[:, None].float().expand_as(days),
        torch.log1p(gap) / 3.0,
        torch.log1p(days.clamp(min=0)) / 6.0,
    ]
    for period in CYCLE_DAYS:
        angle = 2 * math.pi * days / period
        features += [angle.sin(), angle.cos()]
    return torch.stack(features, dim=-1)


def treatment_state(slots: torch.Tensor, days: torch.Tensor, start: torch.Tensor, treatments: int) -> torch.Tensor:
    """(batch, tokens, treatments): the first day each treatment was started, up to and including each
    token (inf if not yet), from the tokens' treatment slots (0: none) and the days before the sequence."""
    hot = F.one_hot(slots, treatments + 1)[..., 1:].bool()  # (batch, tokens, treatments)
    first = torch.where(hot, days.float()[..., None], torch.full_like(hot, float("inf"), dtype=torch.float32))
    return torch.minimum(torch.cummin(first, dim=1).values, start[:, None, :])


def treatment_features(first: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, 2 * treatments): started or not, and how far its effect has ramped (30-day scale)."""
    started = torch.isfinite(first)
    since = torch.where(started, days.float()[..., None] - first, torch.zeros_like(first)).clamp(min=0)
    return torch.cat([started.float(), started.float() * (1 - torch.exp(-since / 30.0))], dim=-1)


def latest_state(
    biomarker: torch.Tensor, value: torch.Tensor, days: torch.Tensor, start_value: torch.Tensor, start_day: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, days), each (batch, tokens, biomarkers): each biomarker's latest value and its day, up to and including
    each token, from the tokens' biomarkers (batch, tokens; 0: none), values and days, and the state before the
    sequence (batch, biomarkers; day -inf: never measured)."""
    count = start_value.shape[-1]
    hot = F.one_hot(biomarker, count + 1)[..., 1:].bool()  # (batch, tokens, biomarkers)
    positions = torch.arange(biomarker.shape[1], device=biomarker.device)[None, :, None]
    last = torch.cummax(torch.where(hot, positions, -1), dim=1).values  # the latest position measuring it, or -1
    seen = last >= 0
    index = last.clamp(min=0)
    values = value[..., None].expand_as(hot).gather(1, index)
    value_days = days.float()[..., None].expand_as(hot).gather(1, index)
    return (
        torch.where(seen, values, start_value[:, None, :]),
        torch.where(seen, value_days, start_day[:, None, :]),
    )


def treatment_level_features(ramp: torch.Tensor, values: torch.Tensor, value_days: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, treatments * biomarkers): each treatment's ramp (batch, tokens, treatments) times each
    biomarker's latest value (0 if never measured)."""
    latest = torch.where(torch.isfinite(value_days), values, 0.0)
    return (ramp[..., :, None] * latest[..., None, :]).flatten(-2)


def start_levels(
    first: torch.Tensor,
    days: torch.Tensor,
    values: torch.Tensor,
    value_days: torch.Tensor,
    start_level: torch.Tensor,
) -> torch.Tensor:
    """(batch, tokens, treatments, biomarkers): each biomarker's latest value (0 if never measured) at the end of the
    day each treatment first started, as known at each token: on the start day itself, the latest value so far (a
    reading later that day counts: a day's treatment tokens come before its measurements, and a simulated arm's
    token after the history's last day), later the start day's last. From the first start days (``first``, (batch,
    tokens, treatments), inf if not yet: ``treatment_state``), the tokens' days (batch, tokens), the latest state at
    each token (``values``, ``value_days``: (batch, tokens, biomarkers)) and the level carried from before the
    sequence (``start_level``, (batch, treatments, biomarkers)), which holds until the sequence reaches a start day."""
    on_start_day = torch.isfinite(first) & (days.float()[..., None] == first)  # (batch, tokens, treatments)
    positions = torch.arange(days.shape[1], device=days.device)[None, :, None]
    at = torch.cummax(torch.where(on_start_day, positions, -1), dim=1).values  # the start day's latest token, or -1
    latest = torch.where(torch.isfinite(value_days), values, 0.0)  # (batch, tokens, biomarkers)
    index = at.clamp(min=0)[..., None].expand(-1, -1, -1, latest.shape[-1])  # (batch, tokens, treatments, biomarkers)
    level = latest[:, :, None, :].expand(-1, -1, first.shape[-1], -1).gather(1, index)
    return torch.where(at[..., None] >= 0, level, start_level[:, None])


def post_start_weights(first: torch.Tensor, days: torch.Tensor, within_days: int, weight: float) -> torch.Tensor:
    """(batch, tokens - 1): the loss weight of each next token, ``weight`` when it falls within ``within_days``
    after a treatment started before it (``first``: (batch, tokens, treatments) start days, inf if none), else 1."""
    since = days[:, 1:].float()[..., None] - first[:, :-1]
    recent = (torch.isfinite(first[:, :-1]) & (since >= 0) & (since < within_days)).any(dim=-1)
    return torch.where(recent, weight, 1.0)


def latest_features(values: torch.Tensor, value_days: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, 3 * biomarkers): measured yet, the latest value (0 if not) and log days since it."""
    known = torch.isfinite(value_days)
    since = torch.where(known, days.float()[..., None] - value_days, torch.zeros_like(value_days)).clamp(min=0)
    return torch.cat([known.float(), torch.where(known, values, 0.0), torch.log1p(since) / 6.0], dim=-1)


class HealthFormerModel(PreTrainedModel):  # type: ignore[no-untyped-call]  # PreTrainedModel.__init_subclass__ is unannotated
    config_class = HealthFormerConfig
    base_model_prefix = "healthformer"
    main_input_name = "input_ids"
    config: HealthFormerConfig
    # Buffers registered in __init__ (nn.Module's __getattr__ would type them as Tensor | Module).
    id_code: torch.Tensor
    id_bin: torch.Tensor
    id_modality: torch.Tensor
    id_value: torch.Tensor
    id_treatment: torch.Tensor
    id_biomarker: torch.Tensor
    id_loss_weight: torch.Tensor

    def __init__(self, config: HealthFormerConfig):
        super().__init__(config)
        self.code_embedding = nn.Embedding(config.codes, config.dim)
        self.bin_embedding = nn.Embedding(config.bins + 1, config.dim)  # 0: the token carries no value
        self.modality_embedding = nn.Embedding(config.modalities, config.dim)
        self.value_projection = nn.Linear(1, config.dim)
        self.time_projection = nn.Linear(TIME_FEATURES, config.dim)
        # Which treatments are under way, and for how long: every token sees it without searching the context.
        self.treatment_projection = nn.Linear(2 * config.treatments, config.dim) if config.treatments else None
        # Each biomarker's latest value and its age: the person's own level, at every position.
        self.latest_projection = nn.Linear(3 * config.biomarkers, config.dim) if config.biomarkers else None
        self.level_projection = (
            nn.Linear(config.treatments * config.biomarkers, config.dim)
            if config.treatment_by_level and config.treatments and config.biomarkers
            else None
        )
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.token_head = nn.Linear(config.dim, config.vocab_size)
        self.rate_head = nn.Linear(config.dim, 1)
        # Per-day rate of each hazard endpoint's first event (log scale), fitted on the frozen trunk (``hazard.py``).
        endpoints = getattr(config, "hazard_endpoints", None) or []
        inputs = config.dim + 3 * config.biomarkers + 2 + len(HAZARD_STATIC_CODES)
        self.hazard_head = nn.Linear(inputs, len(endpoints)) if endpoints else None
        # Lookup tables as saved buffers: from_pretrained restores them like any tensor.
        self.register_buffer("id_code", torch.tensor(config.id_code, dtype=torch.long))
        self.register_buffer("id_bin", torch.tensor(config.id_bin, dtype=torch.long))
        self.register_buffer("id_modality", torch.tensor(config.id_modality, dtype=torch.long))
        self.register_buffer("id_value", torch.tensor(config.id_value, dtype=torch.float32))
        self.register_buffer("id_treatment", torch.tensor(config.id_treatment, dtype=torch.long))
        self.register_buffer("id_biomarker", torch.tensor(config.id_biomarker, dtype=torch.long))
        weights = [config.modality_loss_weights.get(name, 1.0) for name in config.modality_names]
        self.register_buffer("id_loss_weight", torch.tensor(weights, dtype=torch.float32)[self.id_modality])
        self.post_init()  # type: ignore[no-untyped-call]  # PreTrainedModel.post_init is unannotated

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def embed(
        self,
        input_ids: torch.Tensor,
        days: torch.Tensor,
        previous_day: torch.Tensor,
        age_years: torch.Tensor,
        carried: Carried | None = None,
    ) -> tuple[torch.Tensor, Carried]:
        """(batch, tokens, dim): code + value + modality + time (+ treatments under way, + each biomarker's latest
        value and how old it is), and the carried state after the last token, given the state before the first
        (``carried``; None: nothing before)."""
        value = self.id_value[input_ids][..., None]
        x = (
            self.code_embedding(self.id_code[input_ids])
            + self.bin_embedding(self.id_bin[input_ids])
            + self.value_projection(value)
            + self.modality_embedding(self.id_modality[input_ids])
            + self.time_projection(time_features(days, previous_day, age_years))
        )
        if carried is None:
            carried = Carried.empty(self.config, input_ids.shape[0], input_ids.device)
        treatment_start = carried.treatment_start
        features, first = None, None
        if self.treatment_projection is not None:
            first = treatment_state(self.id_treatment[input_ids], days, treatment_start, self.config.treatments)
            features = treatment_features(first, days)
            x = x + self.treatment_projection(features)
            treatment_start = first[:, -1]
        latest_value, latest_day, start_level = carried.latest_value, carried.latest_day, carried.start_level
        if self.latest_projection is not None:
            values, value_days = latest_state(
                self.id_biomarker[input_ids], self.id_value[input_ids], days, latest_value, latest_day
            )
            x = x + self.latest_projection(latest_features(values, value_days, days))
            if self.level_projection is not None and features is not None and first is not None:
                ramp = features[..., self.config.treatments :]
                if getattr(self.config, "level_at_start", False):
                    levels = start_levels(first, days, values, value_days, start_level)
                    x = x + self.level_projection((ramp[..., :, None] * levels).flatten(-2))
                    start_level = levels[:, -1]
                else:
                    x = x + self.level_projection(treatment_level_features(ramp, values, value_days))
            latest_value, latest_day = values[:, -1], value_days[:, -1]
        return x, Carried(treatment_start, latest_value, latest_day, start_level)

    def heads(self, hidden: torch.Tensor) -> Heads:
        hidden = self.norm(hidden)
        return Heads(self.token_head(hidden), F.softplus(self.rate_head(hidden)[..., 0]) + 1e-3, hidden)

    def hazard(self, hidden: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(..., hazard endpoints) each endpoint's per-day rate of a first event, from the normalized state the heads
        read (``Heads.hidden``) and the position's own inputs (:func:`hazard_inputs`)."""
        if self.hazard_head is None:
            raise ValueError("this twin has no hazard head: fit one with twin hazard")
        return torch.exp(self.hazard_head(torch.cat([hidden, inputs], dim=-1)))

    def hidden_states(
        self, input_ids: torch.Tensor, days: torch.Tensor, age_years: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """(batch, tokens, dim) the last block's output at every position (before the heads' normalization), for
        ``input_ids``, ``days``, ``valid`` (batch, tokens) and ``age_years`` (batch,), as :meth:`forward` reads them."""
        tokens = input_ids.shape[1]
        x, _ = self.embed(input_ids, days, days[:, 0], age_years)
        causal = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()
        diagonal = torch.eye(tokens, dtype=torch.bool, device=x.device)
        mask = (causal[None] & valid[:, None, :]) | diagonal[
            None
        ]  # (batch, query, key): a pad query attends to itself only
        for block in self.blocks:
            x = block(x, mask[:, None])
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        days: torch.Tensor,
        age_years: torch.Tensor,
        valid: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        compute_loss: bool = True,
    ) -> HealthFormerOutput:
        """``input_ids``, ``days``, ``valid`` (batch, tokens); ``age_years`` (batch,) NaN when unknown.
        Padding (``valid`` False) may sit on either side; padded positions' days should repeat a neighbour's."""
        logits, rate, _ = self.heads(self.hidden_states(input_ids, days, age_years, valid))
        if not compute_loss:
            return HealthFormerOutput(None, logits, rate)
        target_ids, target_valid = input_ids[:, 1:], valid[:, 1:] & valid[:, :-1]
        weights = self.id_loss_weight[target_ids] * target_valid
        if self.config.post_start_days and self.config.treatments:
            nothing_before = Carried.empty(self.config, input_ids.shape[0], input_ids.device).treatment_start
            first = treatment_state(self.id_treatment[input_ids], days, nothing_before, self.config.treatments)
            weights = weights * post_start_weights(
                first, days, self.config.post_start_days, self.config.post_start_loss_weight
            )
        cross_entropy = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), target_ids.reshape(-1), reduction="none"
        )
        token_loss = (cross_entropy.view_as(weights) * weights).sum() / weights.sum().clamp(min=1e-6)
        gap = (days[:, 1:] - days[:, :-1]).float().clamp(min=0)
        step_rate = rate[:, :-1]
        time_nll = step_rate * gap - torch.log(-torch.expm1(-step_rate))
        time_loss = (time_nll * target_valid).sum() / target_valid.sum().clamp(min=1)
        loss = token_loss + self.config.time_loss_weight * time_loss
        return HealthFormerOutput(loss, logits, rate, token_loss.detach(), time_loss.detach())

    @torch.no_grad()
    def prefill(
        self, input_ids: torch.Tensor, days: torch.Tensor, age_years: torch.Tensor, valid: torch.Tensor, capacity: int
    ) -> tuple[KVCache, Heads]:
        """Run left-padded histories into a new cache of ``capacity`` positions; returns (cache, the heads at the last
        position)."""
        batch, tokens = input_ids.shape
        cache = KVCache(self.config, batch, capacity, input_ids.device, self.token_head.weight.dtype)
        x, cache.carried = self.embed(input_ids, days, days[:, 0], age_years)
        causal = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()
        mask = (causal[None] & valid[:, None, :]) | torch.eye(tokens, dtype=torch.bool, device=x.device)[None]
        # Additive, built once: attention converts a boolean mask to this in every layer otherwise.
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))[
            :, None
        ]  # (batch, 1, query, key)
        for layer, block in enumerate(self.blocks):
            x = block(x, bias, cache, layer)
        cache.valid[:, :tokens] = valid
        cache.length = tokens
        return cache, self.heads(x[:, -1])

    @torch.no_grad()
    def decode_step(
        self,
        cache: KVCache | SharedPrefixCache,
        input_ids: torch.Tensor,
        days: torch.Tensor,
        previous_day: torch.Tensor,
        age_years: torch.Tensor,
        valid: torch.Tensor,
    ) -> Heads:
        """One new token per row (batch,); rows with ``valid`` False add a masked key. Returns each row's heads."""
        if cache.length >= cache.capacity:
            raise ValueError("the KV cache is full")
        x, cache.carried = self.embed(input_ids[:, None], days[:, None], previous_day, age_years, cache.carried)
        position = cache.length
        cache.valid[:, position] = valid
        if isinstance(
            cache, SharedPrefixCache
        ):  # attends to its whole block of suffix positions, the unwritten ones masked
            cache.reserve(position + 1)
            keys_valid = cache.valid[:, : cache.allocated].clone()
        else:
            keys_valid = cache.valid[:, : position + 1].clone()
        keys_valid[:, position] = True  # every query attends at least to itself
        for layer, block in enumerate(self.blocks):
            x = block(x, keys_valid[:, None, None, :], cache, layer)
        cache.length = position + 1
        return self.heads(x[:, 0])


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
