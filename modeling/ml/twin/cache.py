"""The twin's inference state: what a position carries forward without attention (:class:`Carried`), the
key-value cache of a batch of sequences (:class:`KVCache`), and histories shared by the rows that roll them
forward (:class:`SharedPrefixCache`, with its attention :func:`shared_prefix_attention`)."""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from modeling.ml.twin.model import HealthFormerConfig


@dataclass
class Carried:
    """What a position knows of every earlier token without attending to it: the first day each treatment started
    (inf: not yet), each biomarker's latest value (standardized bin center) and its day (-inf: never measured), and
    each biomarker's latest value when each treatment first started (0: not started, or not measured by then).
    Each is (batch, treatments or biomarkers), the last (batch, treatments, biomarkers); a cache carries the state
    after its last token into the next step."""

    treatment_start: torch.Tensor
    latest_value: torch.Tensor
    latest_day: torch.Tensor
    start_level: torch.Tensor

    @classmethod
    def empty(cls, config: "HealthFormerConfig", batch: int, device: torch.device | str) -> "Carried":
        return cls(
            torch.full((batch, config.treatments), float("inf"), device=device),
            torch.zeros(batch, config.biomarkers, device=device),
            torch.full((batch, config.biomarkers), float("-inf"), device=device),
            torch.zeros(batch, config.treatments, config.biomarkers, device=device),
        )

    def select(self, rows: torch.Tensor) -> "Carried":
        return Carried(*(tensor.index_select(0, rows) for tensor in self.tensors()))

    def repeat(self, group: int) -> "Carried":
        return Carried(*(tensor.repeat_interleave(group, dim=0) for tensor in self.tensors()))

    def assign(self, rows: torch.Tensor, other: "Carried") -> None:
        for mine, theirs in zip(self.tensors(), other.tensors(), strict=True):
            mine[rows] = theirs

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.treatment_start, self.latest_value, self.latest_day, self.start_level


class KVCache:
    """Preallocated keys and values per layer, (batch, heads, capacity, head_dim), and which keys are real."""

    def __init__(
        self,
        config: "HealthFormerConfig",
        batch: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ):
        head_dim = config.dim // config.heads
        self.keys = [
            torch.zeros(batch, config.heads, capacity, head_dim, device=device, dtype=dtype)
            for _ in range(config.depth)
        ]
        self.values = [torch.zeros_like(key) for key in self.keys]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.carried = Carried.empty(config, batch, device)  # after the last token written
        self.length = 0
        self.capacity = capacity

    def select(self, rows: torch.Tensor) -> "KVCache":
        """A new cache holding ``rows`` (repeats allowed)."""
        copy = object.__new__(KVCache)
        copy.keys = [key.index_select(0, rows) for key in self.keys]
        copy.values = [value.index_select(0, rows) for value in self.values]
        copy.valid, copy.length, copy.capacity = self.valid.index_select(0, rows), self.length, self.capacity
        copy.carried = self.carried.select(rows)
        return copy


@dataclass
class HistoryBucket:
    """Histories of similar length, left-padded only to the longest of them (per layer: keys and values of
    (histories, heads, width, head_dim)), as the shared part of a SharedPrefixCache."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    bias: torch.Tensor  # (histories, 1, 1, width): added to the scores, -inf on padding
    empty: torch.Tensor  # (histories, 1, 1, 1): -inf on the log-sum-exp of a history of padding only, else 0

    @classmethod
    def of(cls, prefix: KVCache, members: torch.Tensor, width: int) -> "HistoryBucket":
        window = slice(prefix.length - width, prefix.length)  # left padding: every history ends at the last column
        valid = prefix.valid[members, window][:, None, None, :]
        bias = torch.zeros(valid.shape, dtype=prefix.keys[0].dtype, device=valid.device).masked_fill_(
            ~valid, float("-inf")
        )
        # A history of padding only: its first key stands in (no NaN), and -inf on its log-sum-exp gives it no weight.
        empty = ~valid.any(-1, keepdim=True)
        bias[..., :1].masked_fill_(empty, 0.0)
        return cls(
            [key[members, :, window] for key in prefix.keys],
            [value[members, :, window] for value in prefix.values],
            bias,
            torch.zeros(empty.shape, dtype=bias.dtype, device=bias.device).masked_fill_(empty, float("-inf")),
        )

    def select(self, histories: torch.Tensor) -> "HistoryBucket":
        return HistoryBucket(
            [key.index_select(0, histories) for key in self.keys],
            [value.index_select(0, histories) for value in self.values],
            self.bias.index_select(0, histories),
            self.empty.index_select(0, histories),
        )


class SharedPrefixCache:
    """Histories shared by groups of rows (the prefix, one per participant) plus each row's own new tokens (the
    suffix): how one history fans out to arms x samples rows without copying it, and is attended once per
    participant instead of once per row. An inference path only: the same weights, the same results as a KVCache
    holding each row's history and new tokens, to float rounding.

    The histories are kept in ``buckets`` of similar length, shortest first, each padded only to its own longest.
    ``slots`` (rows,) place each row's query in a (histories, group) layout in that order: row ``r`` belongs to the
    history ``slots[r] // group``. The suffix has the KVCache attributes decode_step writes to (keys, values, valid,
    length, capacity, carried); its keys and values grow in blocks of ``GROWTH`` positions, and a row
    attends to the whole block, unwritten positions masked: a contiguous tensor multiplies several times faster
    than a slice of a larger one, and compacting copies only what was written.
    """

    GROWTH = 16

    def __init__(self, prefix: KVCache, group: int, capacity: int, buckets: int = 4):
        participants, heads, _, head_dim = prefix.keys[0].shape
        device = prefix.valid.device
        lengths = prefix.valid[:, : prefix.length].sum(-1)  # (participants,)
        order = torch.argsort(lengths, stable=True)
        self.buckets = [
            HistoryBucket.of(prefix, members, max(1, int(lengths[members].max())))
            for members in torch.tensor_split(order, min(buckets, participants))
        ]
        place = torch.empty_like(order)
        place[order] = torch.arange(participants, device=device)  # each participant's place among the sorted histories
        self.group = group
        self.slots = place.repeat_interleave(group) * group + torch.arange(group, device=device).repeat(participants)
        rows = len(self.slots)
        self.keys = [
            prefix.keys[0].new_zeros(rows, heads, 0, head_dim) for _ in prefix.keys
        ]  # (rows, heads, allocated, head_dim)
        self.values = [torch.zeros_like(key) for key in self.keys]
        self.valid = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
        self.carried = prefix.carried.repeat(group)
        self.length, self.capacity = 0, capacity

    @property
    def histories(self) -> int:
        return sum(len(bucket.bias) for bucket in self.buckets)

    @property
    def allocated(self) -> int:
        return self.keys[0].shape[2]

    def reserve(self, positions: int) -> None:
        """Room for ``positions`` suffix tokens; new positions are zeros (a masked key's weight times its value is 0)."""
        if positions > self.allocated:
            allocated, width = self.allocated, min(self.capacity, self.allocated + self.GROWTH)
            self.keys, self.values = (
                [self._grown(tensor, allocated, width) for tensor in tensors] for tensors in (self.keys, self.values)
            )

    @staticmethod
    def _grown(tensor: torch.Tensor, allocated: int, width: int) -> torch.Tensor:
        rows, heads, _, head_dim = tensor.shape
        grown = tensor.new_empty(rows, heads, width, head_dim)
        grown[:, :, :allocated] = tensor
        grown[:, :, allocated:] = 0.0
        return grown

    def select(self, rows: torch.Tensor) -> "SharedPrefixCache":
        """A new cache holding ``rows`` (no repeats), and the histories of only the participants they belong to."""
        slots = self.slots.index_select(0, rows)
        kept, place = torch.unique(slots // self.group, return_inverse=True)  # sorted: the buckets' order is kept
        copy = object.__new__(SharedPrefixCache)
        copy.buckets, first = [], 0
        for bucket in self.buckets:
            inside = kept[(kept >= first) & (kept < first + len(bucket.bias))] - first
            if len(inside) == len(bucket.bias):  # all of its histories still have a row: share it as it is
                copy.buckets.append(bucket)
            elif len(inside):
                copy.buckets.append(bucket.select(inside))
            first += len(bucket.bias)
        copy.group, copy.slots = self.group, place * self.group + slots % self.group
        copy.keys = [key.index_select(0, rows) for key in self.keys]
        copy.values = [value.index_select(0, rows) for value in self.values]
        copy.valid, copy.length, copy.capacity = self.valid.index_select(0, rows), self.length, self.capacity
        copy.carried = self.carried.select(rows)
        return copy


def shared_prefix_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    cache: SharedPrefixCache,
    layer: int,
) -> torch.Tensor:
    """Attention of one query per row (rows, heads, 1, head_dim) over its participant's history in ``cache`` and its
    own keys and values (rows, heads, suffix, head_dim) where ``mask`` (rows, 1, 1, suffix) holds: each part's
    softmax-weighted values and log-sum-exp, merged into the softmax over both. Returns (rows, heads, 1, head_dim).
    Intermediate scores are updated in place: at this size the time goes to memory traffic, not arithmetic."""
    _rows, heads, _, head_dim = query.shape
    query = query * (1.0 / math.sqrt(head_dim))
    own_scores = (query @ keys.transpose(-1, -2)).masked_fill_(~mask, float("-inf"))  # (rows, heads, 1, suffix)
    own_lse = torch.logsumexp(own_scores, dim=-1, keepdim=True)  # finite: a row always attends to its newest key
    own = own_scores.sub_(own_lse).exp_() @ values  # (rows, heads, 1, head_dim)
    # The history: a participant's rows are one batch of queries against its keys, read once.
    group = cache.group
    grouped = query.new_zeros(cache.histories * group, heads, head_dim).index_copy_(0, cache.slots, query[:, :, 0])
    parts, first = [], 0
    for bucket in cache.buckets:
        count = len(bucket.bias)
        bucket_queries = (
            grouped[first * group : (first + count) * group].view(count, group, heads, head_dim).transpose(1, 2)
        )
        scores = (bucket_queries @ bucket.keys[layer].transpose(-1, -2)).add_(
            bucket.bias
        )  # (histories, heads, group, width)
        peak = scores.amax(-1, keepdim=True)
        weights = torch.softmax(scores, dim=-1)  # fused: about half the time of exp and sum apart
        # The largest weight is exp(peak - lse), so lse = peak - log(largest weight); -inf for a history of padding only.
        lse = (peak - weights.amax(-1, keepdim=True).log_()).add_(bucket.empty)
        parts.append(
            torch.cat([weights @ bucket.values[layer], lse], dim=-1)
        )  # (histories, heads, group, head_dim + 1)
        first += count
    history = torch.cat(parts).transpose(1, 2).reshape(cache.histories * group, heads, head_dim + 1)
    history = history.index_select(0, cache.slots)[:, :, None]  # (rows, heads, 1, head_dim + 1)
    history_lse = history[..., head_dim:]  # (rows, heads, 1, 1)
    history_share = torch.sigmoid(history_lse - own_lse)  # exp(history_lse) / (exp(history_lse) + exp(own_lse))
    return own.add_(history_share * (history[..., :head_dim] - own))
