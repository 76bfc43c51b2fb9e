"""Searching participant-days with words: an index of day embeddings, ranked by a text query's similarity.

The index is one ``.npz`` beside the model (written atomically): the unit-length sensor embedding of
every worn day, who and which day it is, and the day's caption to show beside it.

Ranking (``RANKING``, chosen by recall@5 of labelled queries on new participants, docs/results/sensorlm-tiny):

- **what the caption states**: the activity kind a query names (:func:`activity_query`), with the part of the day and
  "long" it asks for, checked against the activities each caption states (``facts.stated_facts``): a day meeting
  every condition comes first (:func:`facts_share`);
- **the caption's words**: BM25+ of the query's words over the captions (:func:`bm25_share`);
- **the similarity** of the day's sensor embedding and the query's text embedding orders the rest and breaks ties.

Matching words one by one could not bind them: "a long hike" found long nights, "a walk in the morning" evening walks of
days with a morning stress episode (recall@5 0.53 for the first ranking, the share of matched words plus the
similarity; 0.65 for BM25 alone). A tiny model's similarity alone ranked the two hike days of the demo cohort 5th and
8th for "a long hike", and put a ``<script>`` query above every real match: a query of unknown words finds nothing,
rather than the days most like noise.
"""

import math
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rank_bm25 import BM25Plus
from tokenizers import Tokenizer

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.lsm.evaluate import embed_worn_days
from modeling.ml.sensorlm.captions import READER_LEVELS, caption_days, part_of_day
from modeling.ml.sensorlm.facts import KINDS_BY_WORDS, StatedFacts, stated_facts
from modeling.ml.sensorlm.model import SensorLMModel
from modeling.ml.sensorlm.tagging import FittedTagger, opened_with_activities, slot_tokens_and_embeddings
from modeling.ml.sensorlm.train import embed_texts


@dataclass
class DayIndex:
    embeddings: np.ndarray  # (days, embed_dim) float32, unit length
    participant_ids: np.ndarray  # (days,) int64
    day_indices: np.ndarray  # (days,) int64, the day within the participant's minute-level days
    captions: np.ndarray  # (days,) str
    # (days,) bool: the caption's activities are the model's reading of the day (``tagging.py``), its participant
    # having no event log; None for an index built before the tagger (no day read so)
    read_by_model: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.day_indices)

    @cached_property
    def caption_words(self) -> list[set[str]]:
        return [set(words_of(str(caption))) for caption in self.captions]

    @cached_property
    def facts(self) -> list[StatedFacts]:
        """What each caption states (activities with their times and durations, the night), read once per index."""
        return [stated_facts(str(caption)) for caption in self.captions]

    @cached_property
    def has_event_log(self) -> np.ndarray:
        """(days,) bool: the caption says which activities the day held, even "none": written from an event log, or
        read by the model's tagger (``read_by_model``; a day it read none on has no such sentence)."""
        return np.array([fact.activity_sentence for fact in self.facts], dtype=bool)

    @cached_property
    def bm25(self) -> BM25Plus:
        """BM25+ over the captions' words, built once per loaded index. Not Okapi BM25: its word weights turn negative
        for words most captions hold ("heart", "sleep", "morning"), which would rank a day holding a query word below
        one that does not."""
        return BM25Plus([words_of(str(caption)) for caption in self.captions])


def embed_participant_days(
    model: SensorLMModel,
    mean: torch.Tensor,
    std: torch.Tensor,
    values: np.ndarray,
    mask: np.ndarray,
    start_weekday: int,
    *,
    with_tokens: bool = False,
    batch: int = 32,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """(worn day positions, (worn days, embed_dim) embeddings, tokens) of one participant's days (days, channels,
    1440): with ``with_tokens`` the worn days' (worn days, slots, width) slot tokens from the same pass of the sensor
    tower (``tagging.slot_tokens_and_embeddings``), else None."""
    dim = model.config.embed_dim

    def joined(values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor) -> torch.Tensor:
        tokens, embeddings = slot_tokens_and_embeddings(model, values, observed, weekday)
        return torch.cat([embeddings, tokens.flatten(1)], dim=1)

    embed = joined if with_tokens else model.embed_sensor
    worn, out = embed_worn_days(embed, model.device, mean, std, values, mask, start_weekday, batch)
    width = model.config.channel_groups * model.config.dim
    if not worn.size:
        empty = torch.zeros(0, model.config.time_patches, width) if with_tokens else None
        return worn, np.zeros((0, dim), np.float32), empty
    tokens = out[:, dim:].reshape(len(worn), model.config.time_patches, width) if with_tokens else None
    return worn, out[:, :dim].numpy().astype(np.float32), tokens


def build_index(
    model: SensorLMModel,
    mean: torch.Tensor,
    std: torch.Tensor,
    participants: Iterable[tuple[int, np.ndarray, np.ndarray, Iterable[Any], int, int]],
    tagger: FittedTagger | None = None,
) -> DayIndex:
    """``participants`` yields (participant id, values, mask, events, start weekday, first day index) with values/mask
    (days, channels, 1440) and events counting minutes from the participant's first minute-level minute.

    A participant without an event log is captioned from the wearable data alone; with the model's ``tagger`` a day's
    caption opens with the activities the tagger reads from the data, where it reads any (``tagging.py``), and
    ``read_by_model`` marks those days."""
    embeddings, owners, days, captions, read_by_model = [], [], [], [], []
    for participant_id, values, mask, events, start_weekday, first_day in participants:
        weekday = (start_weekday + first_day) % 7
        events = list(events)
        # one pass of the sensor tower: the embeddings, and the tagger's tokens where it reads them
        worn, embedded, tokens = embed_participant_days(
            model, mean, std, values, mask, weekday, with_tokens=tagger is not None and not events
        )
        # all of the participant's days captioned at once, each at its own index; never-worn days are then skipped
        every_caption = caption_days(values, mask, events, READER_LEVELS, first_day=first_day)
        day_captions = [every_caption[day] for day in worn]
        read = [False] * len(worn)
        if tagger is not None and tokens is not None and worn.size:
            day_captions, read = opened_with_activities(day_captions, tagger.activities(tokens))
        embeddings.append(embedded)
        owners += [participant_id] * len(worn)
        days += [first_day + int(day) for day in worn]
        captions += day_captions
        read_by_model += read
    dim = model.config.embed_dim
    return DayIndex(
        np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32),
        np.array(owners, dtype=np.int64),
        np.array(days, dtype=np.int64),
        np.array(captions, dtype=str),
        np.array(read_by_model, dtype=bool),
    )


def save_index(index: DayIndex, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(
        partial,
        embeddings=index.embeddings,
        participant_ids=index.participant_ids,
        day_indices=index.day_indices,
        captions=index.captions,
        read_by_model=np.zeros(len(index), dtype=bool) if index.read_by_model is None else index.read_by_model,
    )
    partial.replace(path)


def load_index(path: Path) -> DayIndex:
    with np.load(path, allow_pickle=False) as stored:
        return DayIndex(
            stored["embeddings"],
            stored["participant_ids"],
            stored["day_indices"],
            stored["captions"],
            stored["read_by_model"] if "read_by_model" in stored.files else None,
        )


FILLER_WORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "with",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "some",
        "day",
        "days",
        "very",
        "my",
        "who",
        "that",
        "had",
        "has",
        "was",
        "were",
        "is",
        "are",
        "by",
        "then",
        "after",
        "before",
    }
)
LEXICAL_WEIGHT = 1.0  # a caption holding every query word once outranks any similarity alone (cosine <= 1)
FACTS_WEIGHT = 2.0  # a day whose stated activity meets every condition of the query outranks any lexical score
ZERO_SHOT_WEIGHT = (
    2.0  # the model's probability of the kind named: as strong as a stated activity, where none is stated
)
LONG_BOUT_MINUTES = 60  # "a long hike": a bout of at least an hour
PERIODS = ("morning", "afternoon", "evening", "night")  # the captioner's parts of the day
# How the page ranks: "facts + bm25 + zero-shot + similarity" (the query's activity, part of the day and "long" checked
# against what each caption states or, for a day whose caption states no activities (no event log), the model's
# zero-shot probability of that activity; then BM25+ over the captions, then the similarity), "facts + bm25 +
# similarity" (no zero-shot), "bm25 + similarity" or "hybrid" (the rarity-weighted share of the query's words, plus
# the similarity). Chosen by recall@5 of labelled queries on new
# participants (docs/results/sensorlm-tiny/README.md, "Find days").
RANKINGS = ("facts + bm25 + zero-shot + similarity", "facts + bm25 + similarity", "bm25 + similarity", "hybrid")
RANKING = "facts + bm25 + zero-shot + similarity"


@dataclass(frozen=True)
class ActivityQuery:
    """What a query asks of a day's activities: a kind, and optionally a part of the day and a long bout."""

    kind: str
    period: str | None
    long: bool

    def conditions(self) -> int:
        return 1 + (self.period is not None) + self.long


# Other forms of the activity words a researcher types, as the captions write them
INFLECTIONS = {
    "walking": "walk",
    "walks": "walk",
    "running": "run",
    "runs": "run",
    "jog": "run",
    "jogging": "run",
    "cycling": "cycle",
    "cycles": "cycle",
    "biking": "cycle",
    "bike": "cycle",
    "swimming": "swim",
    "swims": "swim",
    "hiking": "hike",
    "hikes": "hike",
    "dancing": "dance",
    "commuting": "commute",
    "climbing": "stairs",
}


def activity_query(query: str) -> ActivityQuery | None:
    """The activity a query names (the longest activity words it holds: "commute walk" before "walk"; "walking" reads
    as "walk"), with the part of the day ("in the morning") and "long" it asks for; None for a query naming no activity
    kind. A night's length ("a long night", "a short night") is the night's, not the activity's."""
    words = [INFLECTIONS.get(word, word) for word in words_of(query)]
    text = " " + " ".join(words) + " "
    named = [words for words in KINDS_BY_WORDS if f" {words} " in text]
    if not named:
        return None
    kind_words = max(named, key=len)
    about_activity = text.replace(" long night ", " ").replace(" short night ", " ")
    period = next((name for name in PERIODS if f" {name} " in about_activity), None)
    long = " long " in about_activity or " longer " in about_activity
    return ActivityQuery(KINDS_BY_WORDS[kind_words], period, long)


def facts_share(index: DayIndex, asked: ActivityQuery | None) -> np.ndarray:
    """(days,) for each day, the largest share of the query's conditions (its kind, part of the day, a long bout) that
    one activity its caption states meets; 0 for a day without an activity of that kind, and everywhere for a query
    naming no activity."""
    if asked is None:
        return np.zeros(len(index))

    def met(fact: StatedFacts) -> float:
        best = 0
        for activity in fact.activities:
            if activity.kind != asked.kind:
                continue
            period = asked.period is not None and (
                activity.start_minute is not None and part_of_day(activity.start_minute) == asked.period
            )
            long = asked.long and activity.duration_min >= LONG_BOUT_MINUTES
            best = max(best, 1 + int(period) + int(long))
        return best / asked.conditions()

    return np.array([met(fact) for fact in index.facts])


@dataclass(frozen=True)
class RankedDay:
    row: int  # of the index
    score: float  # FACTS_WEIGHT * stated + LEXICAL_WEIGHT * matched + similarity: what the days are ranked by
    matched: float  # the caption's lexical score for the query: 0 none of its words, 1 each once (see RANKING)
    similarity: float  # cosine of the day's sensor embedding and the query's text embedding
    words: tuple[str, ...]  # the query's words the caption holds
    stated: float = 0.0  # the share of the query's activity conditions the caption states (facts_share)


def words_of(text: str) -> list[str]:
    """A text's lowercase words (letters only), as the lexical rankings compare them."""
    return re.findall(r"[a-z]+", text.lower())


def query_words(tokenizer: Tokenizer, query: str) -> list[str]:
    """The query's words the captions use, as whole words of the tokenizer's vocabulary, without filler words
    (nor single letters, which the vocabulary holds as word pieces)."""
    return list(
        dict.fromkeys(
            word
            for word in words_of(query)
            if len(word) >= 3 and word not in FILLER_WORDS and tokenizer.token_to_id(word) is not None
        )
    )


def query_similarity(model: SensorLMModel, tokenizer: Tokenizer, index: DayIndex, query: str) -> np.ndarray:
    """(days,) the cosine of each day's sensor embedding and the query's text embedding; the query's words the
    tokenizer does not know (markup, typos) and single letters (the tags of <b> or <i>, and "a") are left out."""
    readable = [
        word
        for word in re.findall(r"[a-z]+|\d+", query.lower())
        if word.isdigit() or (len(word) > 1 and tokenizer.token_to_id(word) is not None)
    ]
    text = embed_texts(model, tokenizer, [" ".join(readable)])[0].numpy()
    similarity: np.ndarray = index.embeddings @ text
    return similarity


def lexical_share(tokenizer: Tokenizer, index: DayIndex, query: str) -> np.ndarray:
    """(days,) the rarity-weighted share (0-1) of the query's words each day's caption holds; 0 everywhere for a
    query without a word the captions use."""
    words = query_words(tokenizer, query)
    if not words:
        return np.zeros(len(index))
    caption_words = index.caption_words
    rarity = {
        word: math.log((1 + len(index)) / (1 + sum(word in found for found in caption_words))) + 1.0 for word in words
    }
    share: np.ndarray = np.array(
        [sum(rarity[word] for word in words if word in found) for found in caption_words]
    ) / sum(rarity.values())
    return share


def bm25_share(tokenizer: Tokenizer, index: DayIndex, query: str) -> np.ndarray:
    """(days,) BM25+ of the query's words (:func:`query_words`) against each day's caption, in units of a caption of
    average length that holds each word once: the rarity-weighted (idf) mean over the words of BM25's saturating
    count, 0 for a caption without any of them, 1 for one holding each once, up to ``k1 + 1`` for many times. The unit
    depends on the query and the captions' word rarities, not on the best day found, so days of different indexes
    compare. 0 everywhere for a query without a word the captions use."""
    words = query_words(tokenizer, query)
    if not words or not len(index):
        return np.zeros(len(index))
    bm25 = index.bm25
    # a word no caption holds weighs as the rarest word could (held by one): missing it costs, as in another index
    weight = sum(bm25.idf.get(word, math.log(len(index) + 1)) for word in words)
    if weight <= 0:
        return np.zeros(len(index))
    share: np.ndarray = (np.asarray(bm25.get_scores(words), dtype=float) - bm25.delta * weight) / weight
    return share


_CLASS_EMBEDDINGS: "weakref.WeakKeyDictionary[SensorLMModel, torch.Tensor]" = weakref.WeakKeyDictionary()


def zero_shot_share(
    model: SensorLMModel, tokenizer: Tokenizer, index: DayIndex, asked: ActivityQuery | None
) -> np.ndarray:
    """(days,) the model's zero-shot probability that each day holds the activity kind the query names (0 everywhere for
    a query naming none): what the sensor data says, where the caption may say nothing (a cohort without an event log).
    The kinds' prompt embeddings are computed once per loaded model."""
    if asked is None or not len(index):
        return np.zeros(len(index))
    from modeling.ml.sensorlm.zero_shot import class_text_embeddings, kind_probabilities

    if model not in _CLASS_EMBEDDINGS:
        _CLASS_EMBEDDINGS[model] = class_text_embeddings(model, tokenizer, list(ACTIVITY_NAMES))
    probabilities: np.ndarray = kind_probabilities(model, tokenizer, index.embeddings, _CLASS_EMBEDDINGS[model])
    return probabilities[:, ACTIVITY_NAMES.index(asked.kind)]


@dataclass(frozen=True)
class DayScores:
    """Every day's parts of one ranking's score for a query: ``score = FACTS_WEIGHT * stated + LEXICAL_WEIGHT * matched
    + similarity``."""

    stated: np.ndarray  # (days,) the share of the query's activity conditions met (facts_share, or zero_shot_share)
    matched: np.ndarray  # (days,) the caption's lexical score (bm25_share, or lexical_share for "hybrid")
    similarity: np.ndarray  # (days,) query_similarity

    @property
    def score(self) -> np.ndarray:
        total: np.ndarray = FACTS_WEIGHT * self.stated + LEXICAL_WEIGHT * self.matched + self.similarity
        return total


def day_scores(
    model: SensorLMModel, tokenizer: Tokenizer, index: DayIndex, query: str, ranking: str = RANKING
) -> DayScores:
    """One ranking's scores of every day for ``query`` (:data:`RANKINGS`): what the page ranks by, and what
    ``find_days_eval`` measures."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking is one of {RANKINGS}, not {ranking!r}")
    similarity = query_similarity(model, tokenizer, index, query)
    matched = (lexical_share if ranking == "hybrid" else bm25_share)(tokenizer, index, query)
    asked = activity_query(query)
    stated = facts_share(index, asked) if ranking.startswith("facts") else np.zeros(len(index))
    if ranking == "facts + bm25 + zero-shot + similarity" and not index.has_event_log.all():
        stated = np.where(index.has_event_log, stated, zero_shot_share(model, tokenizer, index, asked))
    return DayScores(stated, matched, similarity)


def rank_days(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    index: DayIndex,
    query: str,
    limit: int = 10,
    ranking: str = RANKING,
) -> list[RankedDay]:
    """The ``limit`` days that best match ``query``, best first, by :func:`day_scores`: what the day's caption states
    against the activity the query asks for, the caption's lexical score for the query's words, and the cosine
    similarity of the day's sensor embedding to the query's text embedding; none when the query holds no word the
    captions use."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking is one of {RANKINGS}, not {ranking!r}")
    words = query_words(tokenizer, query)
    if not len(index) or not words:
        return []
    parts = day_scores(model, tokenizer, index, query, ranking)
    score = parts.score
    order = np.argsort(-score, kind="stable")[:limit]
    return [
        RankedDay(
            int(row),
            float(score[row]),
            float(parts.matched[row]),
            float(parts.similarity[row]),
            tuple(word for word in words if word in index.caption_words[row]),
            float(parts.stated[row]),
        )
        for row in order
    ]
