""" "Find days" measured: labelled text queries against simulated days, each ranking method scored the same way.

The queries are what a researcher types (activity kinds, a kind at a time of day, a long bout of a kind, short,
long and fragmented nights); a day is relevant when its ground truth says so: the facts of its whole reference
caption (``facts.stated_facts``), which the captioner writes from the simulator's event log and sleep stages.
Every query with at least one relevant day among the searched days is asked of every method:

- ``similarity``: the cosine of the day's sensor embedding and the query's text embedding (the model alone);
- ``bm25``: Okapi BM25 (``rank_bm25``) of the query's words over the days' captions, the lexical baseline;
- ``hybrid``: the rarity-weighted share of the query's words in the caption plus the similarity (the page's ranking
  until these measurements);
- ``bm25 + similarity``: BM25 scaled to [0, 1] per query plus the similarity (the same fusion with BM25's weights).

``find_days.RANKING`` says which of the last two the page uses.

Recall@5 is the share of a query's relevant days among the first five (out of at most five); MRR the mean of
1 / the rank of the first relevant day. Both are averaged over queries, with a bootstrap interval over queries.

The captions a day is searched by are the captioner's, written from the day's event log where one exists (the
simulator's, or a cohort's imported events). A lexical method therefore reads the labels from the words the truth
was written in; the similarity reads only the sensor data.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.sensorlm.captions import activity_words, part_of_day
from modeling.ml.sensorlm.facts import StatedFacts, stated_facts
from modeling.ml.sensorlm.find_days import (
    LONG_BOUT_MINUTES,
    RANKINGS,
    DayIndex,
    activity_query,
    day_scores,
    zero_shot_share,
)
from modeling.ml.sensorlm.model import SensorLMModel

METHODS = (
    "chance",
    "similarity",
    "zero-shot",
    "bm25",
    "hybrid",
    "bm25 + similarity",
    "facts + bm25 + similarity",
    "facts + bm25 + zero-shot + similarity",
)
BASELINE = "hybrid"  # the page's ranking before these measurements: every method's paired difference is to it


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    kind: str  # "activity", "activity at a time of day", "long activity", "sleep"
    relevant: np.ndarray  # (days,) bool


def labelled_queries(truths: Sequence[str], minimum_relevant: int = 1) -> list[LabelledQuery]:
    """Queries and their relevant days, from each day's whole reference caption ``truths``."""
    facts = [stated_facts(truth) for truth in truths]
    queries = []

    def add(text: str, kind: str, relevant: Callable[[StatedFacts], bool]) -> None:
        mask = np.array([relevant(fact) for fact in facts])
        if mask.sum() >= minimum_relevant:
            queries.append(LabelledQuery(text, kind, mask))

    def bout(name: str, period: str | None = None, minimum_minutes: int = 0) -> Callable[[StatedFacts], bool]:
        def holds(fact: StatedFacts) -> bool:
            return any(
                activity.kind == name
                and activity.duration_min >= minimum_minutes
                and (
                    period is None
                    or (activity.start_minute is not None and part_of_day(activity.start_minute) == period)
                )
                for activity in fact.activities
            )

        return holds

    for name in ACTIVITY_NAMES:
        words = activity_words(name)
        add(f"a {words}", "activity", bout(name))
        for period in ("morning", "afternoon", "evening"):
            add(f"a {words} in the {period}", "activity at a time of day", bout(name, period))
        add(f"a long {words}", "long activity", bout(name, minimum_minutes=LONG_BOUT_MINUTES))
    # the captioner's own words for a night (its limits, applied to the unrounded length)
    nights = (
        ("a short night", "(short night)"),
        ("a long night", "(long night)"),
        ("fragmented sleep", "fragmented sleep"),
    )
    for text, words in nights:
        relevant = np.array([words in truth.lower() for truth in truths])
        if relevant.sum() >= minimum_relevant:
            queries.append(LabelledQuery(text, "sleep", relevant))
    return queries


class Rankers:
    """Every method's scores of the days of one index for a query (higher ranks first)."""

    def __init__(self, model: SensorLMModel, tokenizer: Tokenizer, index: DayIndex):
        self.model, self.tokenizer, self.index = model, tokenizer, index

    def scores(self, query: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The page's rankings (``find_days.RANKINGS``) as the page computes them, and their parts alone."""
        ranked = {ranking: day_scores(self.model, self.tokenizer, self.index, query, ranking) for ranking in RANKINGS}
        zero_shot = zero_shot_share(self.model, self.tokenizer, self.index, activity_query(query))
        similarity = ranked["hybrid"].similarity
        return {
            "chance": rng.random(len(self.index)),
            "similarity": similarity,
            "zero-shot": zero_shot + 1e-3 * similarity,  # a query naming no activity: the similarity alone
            "bm25": ranked["bm25 + similarity"].matched,
            **{ranking: parts.score for ranking, parts in ranked.items()},
        }


def _recall_and_reciprocal_rank(score: np.ndarray, relevant: np.ndarray, k: int = 5) -> tuple[float, float]:
    order = np.argsort(-score, kind="stable")
    hits = relevant[order]
    recall = float(hits[:k].sum() / min(k, relevant.sum()))
    first = int(np.argmax(hits))
    return recall, 1.0 / (first + 1)


def find_days_scores(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    index: DayIndex,
    truths: Sequence[str],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """{"queries", "by_kind", "methods": {method: {"recall_at_5", "mrr", with intervals}}, "per_query"}."""
    queries = labelled_queries(truths)
    rankers = Rankers(model, tokenizer, index)
    rng = np.random.default_rng(seed)
    per_query: dict[str, list[tuple[float, float]]] = {method: [] for method in METHODS}
    for query in queries:
        for method, score in rankers.scores(query.text, rng).items():
            per_query[method].append(_recall_and_reciprocal_rank(score, query.relevant))
    resamples = rng.integers(0, len(queries), size=(bootstrap, len(queries))) if queries else None

    def interval(values: np.ndarray) -> list[float] | None:
        if resamples is None:
            return None
        means = values[resamples].mean(axis=1)
        return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]

    tables = {method: np.array(values).reshape(-1, 2) for method, values in per_query.items()}
    methods: dict[str, Any] = {}
    for method, table in tables.items():
        summary: dict[str, Any] = {}
        for column, name in ((0, "recall_at_5"), (1, "mrr")):
            summary[name] = float(table[:, column].mean()) if len(table) else None
            summary[f"{name}_ci"] = interval(table[:, column])
            # paired over the same queries and resamples
            summary[f"{name}_minus_{BASELINE}"] = (
                float((table[:, column] - tables[BASELINE][:, column]).mean()) if len(table) else None
            )
            summary[f"{name}_minus_{BASELINE}_ci"] = interval(table[:, column] - tables[BASELINE][:, column])
        summary["by_kind"] = {
            kind: float(table[[q.kind == kind for q in queries], 0].mean())
            for kind in dict.fromkeys(q.kind for q in queries)
        }
        methods[method] = summary
    return {
        "days": len(index),
        "queries": len(queries),
        "query_kinds": {kind: sum(q.kind == kind for q in queries) for kind in dict.fromkeys(q.kind for q in queries)},
        "methods": methods,
        "per_query": [
            {
                "query": query.text,
                "kind": query.kind,
                "relevant_days": int(query.relevant.sum()),
                **{method: per_query[method][position][0] for method in METHODS},
            }
            for position, query in enumerate(queries)
        ],
    }
