"""Captions decoded to state what the sensor side recognizes, without training the network (issue 26).

The CoCa decoder alone writes fluent captions whose activities are often ones that did not happen, while the sensor
tower's embedding tells the activities apart (its linear probe). Two ways of decoding with the trained network:

- :func:`reranked_captions`: sample several captions of a day and keep the one whose text embedding is the most similar
  to the day's sensor embedding: the contrastive side judges the decoder's candidates;
- :func:`grounded_captions`: decide first which activity kinds the day holds (:class:`ActivityDetector`: probes on the
  sensor embedding, fitted on days of other participants), then decode greedily with the caption's first sentence held
  to them (:class:`ActivitySentence`): the decoder writes each activity's duration and time, and chooses among the
  detected kinds only; the list ends when they are stated; a day without any reads "No exercise or commute recorded.".
"""

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from tokenizers import Tokenizer

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.lsm.evaluate import probe_pipeline
from modeling.ml.sensorlm.captions import ACTIVITIES_OPENING, NO_ACTIVITIES, PERIODS, activity_words
from modeling.ml.sensorlm.facts import stated_facts
from modeling.ml.sensorlm.model import CaptionConstraint, SensorLMModel
from modeling.ml.sensorlm.tokenizer import decode
from modeling.ml.sensorlm.train import embed_texts

# ---------------------------------------------------------------- reranking sampled captions

# Chosen on validation participants (seeds 2000 and 3000, 150 captioned days each) among temperatures 0.3-1.3: cooler
# samples are better captions, hotter ones give the reranker more to choose from.
SAMPLING_TEMPERATURE = 0.5
SAMPLING_TOP_P = 0.95


@dataclass(frozen=True)
class Reranked:
    captions: list[str]  # per day, the candidate most similar to the day
    candidates: list[list[str]]  # per day, the sampled captions
    similarity: np.ndarray  # (days, samples) cosine similarity of each candidate to the day's sensor embedding


@torch.no_grad()
def reranked_captions(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor | None = None,
    *,
    samples: int = 16,
    temperature: float = SAMPLING_TEMPERATURE,
    top_p: float = SAMPLING_TOP_P,
    generator: torch.Generator,
    max_tokens: int | None = None,
    batch_rows: int = 256,
) -> Reranked:
    """Per day of the standardized windows ``values``/``observed`` (days, channels, minutes), ``samples`` captions drawn
    by nucleus sampling (``temperature``, ``top_p``) with ``generator``, and the one whose text embedding is the most
    similar to the day's sensor embedding (the first of equals). Decoded ``batch_rows`` candidates at a time; the same
    generator state gives the same result."""
    days_per_batch = max(1, batch_rows // samples)
    candidates: list[list[str]] = []
    similarities = []
    for start in range(0, values.shape[0], days_per_batch):
        window = slice(start, start + days_per_batch)
        day_weekday = None if weekday is None else weekday[window]
        sensor = model.embed_sensor(values[window], observed[window], day_weekday)  # (days, embed_dim)
        ids = model.generate_captions(
            values[window].repeat_interleave(samples, dim=0),  # (days * samples, channels, minutes), day by day
            observed[window].repeat_interleave(samples, dim=0),
            None if day_weekday is None else day_weekday.repeat_interleave(samples, dim=0),
            max_tokens,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
        )
        texts = [decode(tokenizer, row) for row in ids]
        text = embed_texts(model, tokenizer, texts).reshape(len(sensor), samples, -1)  # (days, samples, embed_dim)
        similarities.append(torch.einsum("de,dse->ds", sensor.cpu(), text).numpy())
        candidates += [texts[day * samples : (day + 1) * samples] for day in range(len(sensor))]
    similarity = np.concatenate(similarities)
    best = similarity.argmax(axis=1)
    return Reranked([options[index] for options, index in zip(candidates, best, strict=True)], candidates, similarity)


# ---------------------------------------------------------------- which activities a day holds


def activity_counts(truths: Sequence[str]) -> np.ndarray:
    """(days, kinds) how many times each day's caption states each activity kind (``ACTIVITY_NAMES`` order)."""
    counts = np.zeros((len(truths), len(ACTIVITY_NAMES)), dtype=int)
    for day, truth in enumerate(truths):
        for kind, count in Counter(activity.kind for activity in stated_facts(truth).activities).items():
            if kind in ACTIVITY_NAMES:
                counts[day, ACTIVITY_NAMES.index(kind)] = count
    return counts


def precise_threshold(probabilities: np.ndarray, present: np.ndarray, precision: float) -> float:
    """The lowest probability threshold (``>=``) at which at least ``precision`` of the days detected are ``present``
    (days,) bool; infinite where none reaches it."""
    order = np.argsort(-probabilities, kind="stable")
    ranked = probabilities[order]
    hits = np.cumsum(present[order]) / np.arange(1, len(ranked) + 1)  # the precision of detecting the first n days
    last_of_equals = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold detects all days of equal probability
    reaching = np.flatnonzero(last_of_equals & (hits >= precision))
    return float(ranked[reaching[-1]]) if reaching.size else float("inf")


@dataclass
class ActivityDetector:
    """Which activity kinds a day holds, from its unit sensor embedding: a class-balanced logistic-regression probe per
    kind (``lsm.evaluate.probe_pipeline``) and the lowest probability threshold at which its detections were right at
    least as often as asked on held-out participants of the fitting days. A detected kind is stated as many times as
    the fitting days that hold it most often hold it (a commuter's two walks)."""

    probes: dict[str, Pipeline]  # kinds held by too few fitting days are left out: never detected
    thresholds: dict[str, float]
    counts: dict[str, int]

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(days, kinds) each probe's probability that the day holds its kind (``ACTIVITY_NAMES`` order; 0 without one)."""
        probabilities = np.zeros((len(embeddings), len(ACTIVITY_NAMES)))
        for kind, probe in self.probes.items():
            probabilities[:, ACTIVITY_NAMES.index(kind)] = probe.predict_proba(embeddings)[:, 1]
        return probabilities

    def detect(self, embeddings: np.ndarray) -> list[dict[str, int]]:
        """Per day, the detected kinds and how many times to state each."""
        probabilities = self.probabilities(embeddings)
        return [
            {
                kind: self.counts[kind]
                for position, kind in enumerate(ACTIVITY_NAMES)
                if kind in self.probes and day[position] >= self.thresholds[kind]
            }
            for day in probabilities
        ]


def fit_activity_detector(
    *,
    embeddings: np.ndarray,
    truths: Sequence[str],
    groups: np.ndarray,
    precision: float = 0.8,
    folds: int = 5,
    minimum_days: int = 5,
) -> ActivityDetector:
    """An :class:`ActivityDetector` fitted on days the caller may fit on: ``embeddings`` (days, embed_dim), their
    reference captions ``truths`` (read with ``facts.stated_facts``) and their participants ``groups``. Each kind's
    threshold is the lowest at which ``precision`` of the days detected hold the kind, on out-of-fold probabilities of
    ``folds`` folds split by participant (:func:`precise_threshold`); a kind held by fewer than ``minimum_days`` days
    (or missing from fewer) gets no probe."""
    counts = activity_counts(truths)
    splits = list(GroupKFold(n_splits=folds).split(embeddings, groups=groups))
    probes, thresholds, usual_counts = {}, {}, {}
    for position, kind in enumerate(ACTIVITY_NAMES):
        present = counts[:, position] > 0
        if min(present.sum(), (~present).sum()) < minimum_days:
            continue
        out_of_fold = np.zeros(len(present))
        for fitting, held_out in splits:
            if present[fitting].all() or not present[fitting].any():
                out_of_fold[held_out] = present[fitting].mean()
                continue
            probe = probe_pipeline("classification").fit(embeddings[fitting], present[fitting])
            out_of_fold[held_out] = probe.predict_proba(embeddings[held_out])[:, 1]
        probes[kind] = probe_pipeline("classification").fit(embeddings, present)
        thresholds[kind] = precise_threshold(out_of_fold, present, precision)
        usual_counts[kind] = int(np.bincount(counts[present, position]).argmax())
    return ActivityDetector(probes, thresholds, usual_counts)


# ---------------------------------------------------------------- decoding held to the detected activities


class ActivitySentence:
    """A ``CaptionConstraint`` of greedy decoding: each caption's first sentence states exactly the given activities.

    For a caption with activities to state the sentence opens with "Activities:" and follows the captioner's grammar,
    item by item: "a 134-minute" (the decoder's article and duration), then an activity name among the kinds still to
    state, then "in the morning at 09:01" (the decoder's part of the day and time), then "," while kinds remain to be
    stated and "." once none does (the decoder's choice between ending the item or writing on is kept: the separator it
    is given takes both separators' probability). A caption without any is given "No exercise or commute recorded.".
    After the sentence the decoder writes freely, except another "Activities:" sentence. Holds the decoding state of
    one batch: make one per call of ``generate_captions``."""

    def __init__(self, tokenizer: Tokenizer, kinds: Sequence[Mapping[str, int]]):
        def ids(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False).ids)

        vocabulary = tokenizer.get_vocab_size()

        def allowing(words: str) -> torch.Tensor:
            allowed = torch.zeros(vocabulary, dtype=torch.bool)
            allowed[ids(words)] = True
            return allowed

        digits = " ".join("0123456789")
        self.item = allowing(f"a an {digits} - minute")  # "an 18-minute": the item up to its activity name
        self.time = allowing(f"in the {' '.join(name for name, _, _ in PERIODS)} at {digits} :")
        self.opening, self.none = ids(ACTIVITIES_OPENING), ids(NO_ACTIVITIES)
        self.minute, self.comma, self.period = ids("minute")[0], ids(",")[0], ids(".")[0]
        self.names = {kind: tuple(ids(activity_words(kind))) for kind in ACTIVITY_NAMES}
        unknown = {kind for day in kinds for kind in day} - set(self.names)
        if unknown:
            raise ValueError(f"activity kinds are among ACTIVITY_NAMES, not {sorted(unknown)}")
        self.remaining = [Counter({kind: count for kind, count in day.items() if count > 0}) for day in kinds]
        self.forced = [list(self.opening if remaining else self.none) for remaining in self.remaining]
        self.phase = ["opening" if remaining else "none" for remaining in self.remaining]
        self.name: list[tuple[int, ...]] = [() for _ in kinds]  # the activity name's tokens written so far
        self.length = 1  # tokens seen ([CLS])

    def _continuations(self, row: int) -> set[int]:
        """The tokens that can follow the activity name written so far, among the kinds the row has still to state."""
        prefix = self.name[row]
        return {
            tokens[len(prefix)]
            for kind, tokens in self.names.items()
            if self.remaining[row][kind] > 0 and tokens[: len(prefix)] == prefix and len(tokens) > len(prefix)
        }

    def _read(self, row: int, token: int) -> None:
        """Move the row's state past its newest token."""
        phase = self.phase[row]
        if self.forced[row]:
            self.forced[row].pop(0)
            if not self.forced[row]:
                self.phase[row] = "item" if phase == "opening" else "done"
        elif phase == "item" and token == self.minute:
            self.phase[row], self.name[row] = "name", ()
        elif phase == "name":
            self.name[row] += (token,)
            stated = [
                kind
                for kind, tokens in self.names.items()
                if tokens == self.name[row] and self.remaining[row][kind] > 0
            ]
            if stated and not self._continuations(row):
                self.remaining[row][stated[0]] -= 1
                self.phase[row] = "time"
        elif phase == "time" and token in (self.comma, self.period):
            self.phase[row] = "item" if token == self.comma else "done"

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        for position in range(self.length, ids.shape[1]):
            for row in range(len(self.phase)):
                if self.phase[row] != "done":
                    self._read(row, int(ids[row, position]))
        self.length = ids.shape[1]
        allowed = torch.ones(logits.shape, dtype=torch.bool)  # (batch, vocabulary)
        separators = {}  # row: the separator that takes both separators' probability
        for row, phase in enumerate(self.phase):
            if phase == "done":
                allowed[row, self.opening[0]] = False  # one activities sentence, the first
            elif self.forced[row]:
                allowed[row] = False
                allowed[row, self.forced[row][0]] = True
            elif phase == "item":
                allowed[row] = self.item
            elif phase == "name":
                allowed[row] = False
                allowed[row, list(self._continuations(row))] = True
            else:  # "time"
                separators[row] = self.comma if sum(self.remaining[row].values()) > 0 else self.period
                allowed[row] = self.time
                allowed[row, separators[row]] = True
        logits = logits.clone()
        for row, separator in separators.items():
            logits[row, separator] = torch.logsumexp(logits[row, [self.comma, self.period]], dim=0)
        return logits.masked_fill(~allowed.to(logits.device), -torch.inf)


def constrained_captions(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor | None,
    constraint_of: Callable[[slice], CaptionConstraint],
    *,
    max_tokens: int | None = None,
    batch: int = 64,
) -> list[str]:
    """Greedy captions of the standardized windows ``values``/``observed`` (days, channels, minutes), ``batch`` days at
    a time, each batch decoded with the constraint ``constraint_of`` makes for its days (a slice of the days)."""
    captions = []
    for start in range(0, values.shape[0], batch):
        window = slice(start, start + batch)
        ids = model.generate_captions(
            values[window],
            observed[window],
            None if weekday is None else weekday[window],
            max_tokens,
            constraint=constraint_of(window),
        )
        captions += [decode(tokenizer, row) for row in ids]
    return captions


def grounded_captions(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor | None,
    kinds: Sequence[Mapping[str, int]],
    *,
    max_tokens: int | None = None,
    batch: int = 64,
) -> list[str]:
    """Greedy captions whose activities sentence states, per day, the activity kinds of ``kinds`` (kind: how many
    times) and no other (:class:`ActivitySentence`): "No exercise or commute recorded." for a day given none."""
    return constrained_captions(
        model,
        tokenizer,
        values,
        observed,
        weekday,
        lambda window: ActivitySentence(tokenizer, kinds[window]),
        max_tokens=max_tokens,
        batch=batch,
    )
