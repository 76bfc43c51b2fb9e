"""SensorLM: a sensor tower and a text tower trained to meet in one embedding space.

The sensor tower is the foundation model's patch encoder (same parameter names, so it can start from
an LSM checkpoint) followed by attention pooling; the text tower is a small BERT built from a config
and mean-pooled. Three objectives, as in the paper:

- ``clip``: symmetric InfoNCE with a learnable temperature (open_clip's ClipLoss; the losses, gathered across
  processes, are in ``losses.py``);
- ``siglip``: a sigmoid over every sensor-text pair with a learnable temperature and bias;
- ``coca``: CLIP plus captioning, a BERT decoder cross-attending to the sensor tokens.

A checkpoint is a ``PreTrainedModel`` directory; the caption tokenizer and the channel normalization
are saved in the same directory (see :func:`save_sensorlm` / :func:`load_sensorlm`).
"""

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertLMHeadModel, BertModel, PretrainedConfig, PreTrainedModel

from modeling.ml.common.init import xavier_init
from modeling.ml.lsm.masking import patch_missing
from modeling.ml.lsm.model import ENCODER_ARCHITECTURE, ENCODER_PARAMETERS, PatchEncoderMixin, PatchGeometry
from modeling.ml.sensorlm.losses import clip_loss, siglip_loss

if TYPE_CHECKING:
    from tokenizers import Tokenizer

LOSSES = ("clip", "siglip", "coca")
# (ids so far (batch, length), next-token logits (batch, vocabulary)) -> the logits to choose from
CaptionConstraint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SIZES = {
    # name: (dim, depth, heads, patch_minutes, text_dim, text_depth, text_heads, embed_dim, decoder_depth)
    "tiny": (64, 2, 4, 60, 64, 2, 4, 64, 1),
    "small": (256, 6, 8, 10, 256, 4, 4, 256, 2),
    "base": (768, 12, 12, 10, 512, 8, 8, 512, 4),
}


class SensorLMConfig(PatchGeometry, PretrainedConfig):  # type: ignore[no-untyped-call]  # PretrainedConfig.__init_subclass__ is unannotated
    model_type = "healthagent_sensorlm"

    def __init__(
        self,
        channels: int = 27,
        minutes: int = 1440,
        patch_minutes: int = 60,
        patch_channels: int = 1,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        calendar_features: bool = False,
        vocabulary_size: int = 512,
        text_dim: int = 64,
        text_depth: int = 2,
        text_heads: int = 4,
        max_text_tokens: int = 448,
        embed_dim: int = 64,
        patch_keep: float = 0.5,
        loss: str = "clip",
        decoder_depth: int = 1,
        caption_weight: float = 1.0,
        caption_levels: Sequence[str] = ("semantic", "structural", "statistical"),
        size: str = "tiny",
        pad_token_id: int = 0,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        **kwargs: Any,
    ):
        # PreTrainedConfig's __init__ takes any keyword at run time (strict(accept_kwargs=True)); mypy sees the
        # dataclass fields only, which do not include the special token ids.
        super().__init__(  # type: ignore[call-arg]
            pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs
        )
        if minutes % patch_minutes or channels % patch_channels:
            raise ValueError("patch sizes must divide the window (minutes) and the channels")
        if loss not in LOSSES:
            raise ValueError(f"loss is one of {LOSSES}, not {loss!r}")
        self.channels, self.minutes, self.patch_minutes, self.patch_channels = (
            channels,
            minutes,
            patch_minutes,
            patch_channels,
        )
        self.dim, self.depth, self.heads, self.mlp_ratio, self.dropout = dim, depth, heads, mlp_ratio, dropout
        self.calendar_features = calendar_features
        self.vocabulary_size, self.text_dim, self.text_depth, self.text_heads = (
            vocabulary_size,
            text_dim,
            text_depth,
            text_heads,
        )
        self.max_text_tokens, self.embed_dim, self.loss = max_text_tokens, embed_dim, loss
        self.patch_keep = (
            patch_keep  # fraction of observed patches the sensor tower sees in training (1.0 at inference)
        )
        self.decoder_depth, self.caption_weight = decoder_depth, caption_weight
        self.caption_levels, self.size = list(caption_levels), size

    @classmethod
    def named(cls, size: str, **overrides: Any) -> "SensorLMConfig":
        dim, depth, heads, patch_minutes, text_dim, text_depth, text_heads, embed_dim, decoder_depth = SIZES[size]
        values = {
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "patch_minutes": patch_minutes,
            "text_dim": text_dim,
            "text_depth": text_depth,
            "text_heads": text_heads,
            "embed_dim": embed_dim,
            "decoder_depth": decoder_depth,
            "size": size,
        }
        return cls(**{**values, **overrides})

    def bert_config(self, *, decoder: bool) -> BertConfig:
        return BertConfig(
            vocab_size=self.vocabulary_size,
            hidden_size=self.text_dim,
            num_hidden_layers=self.decoder_depth if decoder else self.text_depth,
            num_attention_heads=self.text_heads,
            intermediate_size=4 * self.text_dim,
            max_position_embeddings=self.max_text_tokens,
            pad_token_id=self.pad_token_id,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            is_decoder=decoder,
            add_cross_attention=decoder,
            tie_word_embeddings=False,
        )


class SensorTower(PatchEncoderMixin, nn.Module):
    """The foundation model's encoder over every observed patch (gaps attention-masked, never imputed)."""

    def __init__(self, config: SensorLMConfig):
        super().__init__()
        self.config = config
        self.build_patch_encoder(config)

    def forward(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        weekday: torch.Tensor | None = None,
        *,
        keep: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, visible patches, dim) encodings and (batch, visible patches) padding. With ``keep`` < 1 only that
        fraction of each window's observed patches is encoded, chosen at random (FLIP's patch dropping)."""
        values = torch.where(observed, values, torch.zeros_like(values))
        hidden = patch_missing(observed, self.config.patch_channels, self.config.patch_minutes)  # (batch, patches)
        if keep < 1.0:
            scores = (
                torch.rand(hidden.shape, generator=generator).to(hidden.device).masked_fill(hidden, 2.0)
            )  # missing sort last
            rank = scores.argsort(dim=1).argsort(dim=1)
            kept = ((~hidden).sum(dim=1, keepdim=True) * keep).ceil().clamp(min=1)
            hidden = hidden | (rank >= kept)
        encoded, _, padding = self.encode(self.patchify(values), hidden, weekday)
        return encoded, padding


class AttentionPooling(nn.Module):
    """One learned query attending over the sensor tokens: (batch, tokens, dim) -> (batch, dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.attention(
            self.query.expand(tokens.shape[0], -1, -1), tokens, tokens, key_padding_mask=padding, need_weights=False
        )
        normalized: torch.Tensor = self.norm(pooled[:, 0])
        return normalized


@dataclass
class SensorLMOutput:
    loss: torch.Tensor
    contrastive_loss: torch.Tensor
    caption_loss: torch.Tensor | None
    sensor_embeddings: torch.Tensor  # (batch, embed_dim), unit length
    text_embeddings: torch.Tensor  # (batch, embed_dim), unit length


class SensorLMModel(PreTrainedModel):  # type: ignore[no-untyped-call]  # PreTrainedModel.__init_subclass__ is unannotated
    config_class = SensorLMConfig
    base_model_prefix = "sensorlm"
    main_input_name = "values"

    def __init__(self, config: SensorLMConfig):
        super().__init__(config)
        self.sensor = SensorTower(config)
        self.pooling = AttentionPooling(config.dim, config.heads)
        self.sensor_projection = nn.Linear(config.dim, config.embed_dim, bias=False)
        self.text = BertModel(config.bert_config(decoder=False), add_pooling_layer=False)
        self.text_projection = nn.Linear(config.text_dim, config.embed_dim, bias=False)
        if config.loss == "siglip":  # SigLIP's initialisation: t = 10, b = -10
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        else:  # CLIP's: t = 1 / 0.07
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if config.loss == "coca":
            self.sensor_to_decoder = nn.Linear(config.dim, config.text_dim)
            self.decoder = BertLMHeadModel(config.bert_config(decoder=True))
        self.post_init()  # type: ignore[no-untyped-call]  # PreTrainedModel.post_init is unannotated

    def _init_weights(self, module: nn.Module) -> None:
        xavier_init(module, embedding_std=0.02)
        if isinstance(module, AttentionPooling):
            nn.init.normal_(module.query, std=0.02)

    # ------------------------------------------------------------ towers

    def sensor_tokens(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        weekday: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.config.patch_keep if self.training else 1.0
        tokens_and_padding: tuple[torch.Tensor, torch.Tensor] = self.sensor(
            values, observed, weekday if self.config.calendar_features else None, keep=keep, generator=generator
        )
        return tokens_and_padding

    def embed_sensor(
        self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(batch, embed_dim) unit-length sensor embeddings of standardized windows (batch, channels, minutes)."""
        tokens, padding = self.sensor_tokens(values, observed, weekday)
        return self.embed_tokens(tokens, padding)

    def embed_tokens(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """(batch, embed_dim) unit-length sensor embeddings of the sensor tower's (batch, tokens, dim) encodings,
        ``padding`` (batch, tokens) True where a token is not one: attention pooling, which has no positions, so
        the tokens may come in any order (the tower's visible ones, or its full grid with the missing masked)."""
        return F.normalize(self.sensor_projection(self.pooling(tokens, padding)), dim=-1)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, embed_dim) unit-length text embeddings: the text tower mean-pooled over real tokens."""
        hidden = self.text(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (batch, tokens, text_dim)
        weights = attention_mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return F.normalize(self.text_projection(pooled), dim=-1)

    def logits(self, sensor: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(sensors, texts) similarity logits with the learned temperature (and bias for SigLIP)."""
        logits = self.logit_scale.exp().clamp(max=100) * sensor @ text.T
        return logits + self.logit_bias if self.config.loss == "siglip" else logits

    # ------------------------------------------------------------ training

    def forward(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        weekday: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SensorLMOutput:
        """``values``/``observed`` (batch, channels, minutes), standardized; ``input_ids``/``attention_mask`` (batch, tokens),
        the captions of the same windows. ``generator`` draws the patches dropped in training."""
        tokens, padding = self.sensor_tokens(values, observed, weekday, generator)
        sensor = self.embed_tokens(tokens, padding)
        text = self.embed_text(input_ids, attention_mask)
        scale = self.logit_scale.exp().clamp(max=100)  # the negatives are the global batch's under torchrun
        if self.config.loss == "siglip":
            contrastive = siglip_loss(sensor, text, scale, self.logit_bias)
        else:
            contrastive = clip_loss(sensor, text, scale)
        caption = None
        if self.config.loss == "coca":
            labels = input_ids.masked_fill(attention_mask == 0, -100)
            caption = self.decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=labels,
                encoder_hidden_states=self.sensor_to_decoder(tokens),
                encoder_attention_mask=(~padding).long(),
            ).loss
        loss = contrastive if caption is None else contrastive + self.config.caption_weight * caption
        return SensorLMOutput(
            loss=loss,
            contrastive_loss=contrastive.detach(),
            caption_loss=None if caption is None else caption.detach(),
            sensor_embeddings=sensor,
            text_embeddings=text,
        )

    # ------------------------------------------------------------ captioning

    @torch.no_grad()
    def generate_captions(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        weekday: torch.Tensor | None = None,
        max_tokens: int | None = None,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        constraint: CaptionConstraint | None = None,
    ) -> list[list[int]]:
        """Captions (token ids, [CLS] first, up to [SEP]) of standardized windows; CoCa models only.

        Greedy with ``temperature`` 0 (the default); above 0 each token is drawn from the softmax of the logits at that
        temperature, kept to the smallest set of most likely tokens whose probability reaches ``top_p`` (nucleus
        sampling), with ``generator``: the same generator state gives the same captions. ``constraint`` is called at
        every step with the ids so far (batch, length) and the next token's logits (batch, vocabulary) and returns the
        logits to choose from (``-inf`` forbids a token): the hook of constrained decoding (``decoding.py``)."""
        if self.config.loss != "coca":
            raise ValueError("only a CoCa model has a caption decoder")
        max_tokens = max_tokens or self.config.max_text_tokens
        tokens, padding = self.sensor_tokens(values, observed, weekday)
        context, context_mask = self.sensor_to_decoder(tokens), (~padding).long()
        batch = values.shape[0]
        ids = torch.full((batch, 1), self.config.bos_token_id, dtype=torch.long, device=values.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=values.device)
        cache = None  # the decoder's keys and values of the tokens so far: each step reads only its new token
        for _ in range(max_tokens - 1):
            output = self.decoder(
                input_ids=ids if cache is None else ids[:, -1:],
                attention_mask=torch.ones_like(ids),
                encoder_hidden_states=context,
                encoder_attention_mask=context_mask,
                past_key_values=cache,
                use_cache=True,
            )
            cache = output.past_key_values
            logits = output.logits[:, -1]  # (batch, vocabulary)
            if constraint is not None:
                logits = constraint(ids, logits)
            following = (
                logits.argmax(dim=-1) if temperature <= 0 else nucleus_sample(logits, temperature, top_p, generator)
            ).masked_fill(finished, self.config.pad_token_id)
            ids = torch.cat([ids, following[:, None]], dim=1)
            finished |= following == self.config.eos_token_id
            if finished.all():
                break
        return [[token for token in row.tolist() if token != self.config.pad_token_id] for row in ids]

    # ------------------------------------------------------------ from the foundation model

    def init_sensor_from(self, lsm_model_dir: Path) -> int:
        """Copy the patch encoder of a foundation-model checkpoint into the sensor tower; returns tensors copied.
        Refuses a checkpoint whose encoder architecture differs."""
        from modeling.ml.lsm.model import LSMForMaskedPretraining

        lsm = LSMForMaskedPretraining.from_pretrained(lsm_model_dir)
        mismatched = [name for name in ENCODER_ARCHITECTURE if getattr(lsm.config, name) != getattr(self.config, name)]
        if mismatched:
            raise ValueError(
                "the foundation model's encoder differs from the sensor tower's: "
                + ", ".join(
                    f"{name} {getattr(lsm.config, name)} vs {getattr(self.config, name)}" for name in mismatched
                )
            )
        weights = {name: tensor for name, tensor in lsm.state_dict().items() if name.startswith(ENCODER_PARAMETERS)}
        missing, unexpected = self.sensor.load_state_dict(weights, strict=False)
        if unexpected or missing:
            raise ValueError(f"encoder weights do not fit: missing {missing}, unexpected {unexpected}")
        return len(weights)


def nucleus_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(batch,) one token per row of ``logits`` (batch, vocabulary), drawn at ``temperature`` from the smallest set of
    most likely tokens whose probability reaches ``top_p`` (Holtzman et al.'s nucleus)."""
    probabilities = torch.softmax(logits / temperature, dim=-1)
    ordered, order = probabilities.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered >= top_p  # the nucleus was already full before this token
    choice = torch.multinomial(ordered.masked_fill(outside, 0.0), 1, generator=generator)  # (batch, 1)
    return order.gather(-1, choice)[:, 0]


def save_sensorlm(model: SensorLMModel, tokenizer: "Tokenizer", normalization: dict[str, Any], model_dir: Path) -> None:
    """The model, its tokenizer and the channel normalization in one directory."""
    from modeling.ml.sensorlm.tokenizer import save_tokenizer

    model.save_pretrained(model_dir)
    save_tokenizer(tokenizer, model_dir)
    partial = model_dir / "normalization.json.partial"
    partial.write_text(json.dumps(normalization))
    partial.replace(model_dir / "normalization.json")


def load_sensorlm(
    model_dir: Path, device: str = "cpu"
) -> tuple[SensorLMModel, "Tokenizer", torch.Tensor, torch.Tensor]:
    """(model in eval mode, tokenizer, channel mean, channel SD) of a saved SensorLM directory."""
    from modeling.ml.sensorlm.tokenizer import load_tokenizer

    model = SensorLMModel.from_pretrained(model_dir)
    model = model.to(device).eval()  # type: ignore[arg-type]  # @wraps on PreTrainedModel.to hides self from mypy
    normalization = json.loads((Path(model_dir) / "normalization.json").read_text())
    return model, load_tokenizer(model_dir), torch.tensor(normalization["mean"]), torch.tensor(normalization["std"])
