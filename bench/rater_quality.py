"""Rater quality control against a simulation with known truth: who the site's rules flag, and what that does to
the estimate of the difference between two agent variants.

200 simulated raters rate 2,000 results items (1,000 participants, each answered by variant A and by variant B;
three Likert dimensions 1–5; k = 3 distinct raters per item). 10 % of the raters answer at random, 10 % add one
point, the rest are honest with noise. Each replicate builds two worlds from the same items and raters:

- **no quality control**: every rater is admitted and rates, no gold item, nothing excluded;
- **the site's protocol** (:mod:`evaluation.raters`): a qualification attempt of 10 items graded by
  :func:`evaluation.quality.reference_match` (tolerance 1) against the pass threshold 0.8 with one retry, raters who
  fail get no main items (their share goes to the others); gold items mixed into the main queue at 5 %, a rater
  paused when after at least 5 gold items their running gold accuracy is below 0.8; the ratings excluded by
  :func:`evaluation.quality.exclusions` (below gold threshold, paused, too fast) are left out of the estimate.

Goals (the issue): ≥ 90 % of random raters flagged, ≤ 5 % of honest raters flagged, and the exclusions reduce the
error of the variant-difference estimate against the truth.
"""

import time
from typing import Any

import numpy as np

DIMENSIONS = ("relevance", "context", "safety")
RATERS = 200
PARTICIPANTS = 1000  # items = 2 x participants (variant A and variant B answer each participant)
RATERS_PER_ITEM = 3
SHARE_RANDOM = 0.10
SHARE_BIASED = 0.10
BIAS = 1.0
HONEST_SD = (0.6, 0.8)  # each non-random rater's own noise sd, drawn uniformly in this range
LATENT_DIFFERENCE = 0.5  # variant A − variant B on the latent quality, every dimension
PARTICIPANT_SD = 0.6  # latent quality: 3.0 + participant effect (per dimension) ± difference/2 + item effect
ITEM_SD = 0.4
TIME_HONEST = (45.0, 0.6)  # seconds per item: lognormal (median, sigma of the log); biased raters too
TIME_RANDOM = (8.0, 0.6)
# The simulated study's settings: the site's defaults, except min_seconds_per_item (the site's default 0 = off).
PASS_THRESHOLD = 0.8
QUALIFICATION_ITEMS = 10
QUALIFICATION_RETRIES = 1
GOLD_RATE = 0.05
GOLD_MINIMUM = 5
GOLD_POOL = 50
TOLERANCE = 1
MIN_SECONDS = 10.0
REPLICATES = 100
BASE_SEED = 20_250_601
GOALS = {"random_flagged_min": 0.90, "honest_flagged_max": 0.05, "exclusions_reduce_error": True}

KIND_HONEST, KIND_BIASED, KIND_RANDOM = 0, 1, 2
KIND_NAMES = {KIND_HONEST: "honest", KIND_BIASED: "biased", KIND_RANDOM: "random"}


def _latent(rng: np.random.Generator, count: int) -> np.ndarray:
    """Latent quality (count x dimensions) of items that are not results items (qualification, gold)."""
    offset = rng.choice([-LATENT_DIFFERENCE / 2, LATENT_DIFFERENCE / 2], size=(count, 1))
    return 3.0 + offset + rng.normal(0, np.hypot(PARTICIPANT_SD, ITEM_SD), (count, len(DIMENSIONS)))


def _scores(rng: np.random.Generator, quality: np.ndarray, kind: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Integer scores 1–5 (rows x dimensions) of raters of ``kind`` and noise ``sd`` (per row) for ``quality``."""
    noisy = quality + np.where(kind == KIND_BIASED, BIAS, 0.0)[:, None] + rng.normal(0, 1, quality.shape) * sd[:, None]
    given = np.clip(np.round(noisy), 1, 5)
    uniform = rng.integers(1, 6, quality.shape)
    return np.where((kind == KIND_RANDOM)[:, None], uniform, given).astype(int)


def _expected_honest(quality: np.ndarray) -> np.ndarray:
    """The expected score of an honest rater (noise sd uniform over HONEST_SD, rounded, clipped to 1–5) per cell:
    1 + Σ_{s=1..4} P(score > s), averaged over a grid of sds."""
    from scipy.special import ndtr

    sds = np.linspace(*HONEST_SD, 9)
    thresholds = np.arange(1, 5) + 0.5
    above = 1 - ndtr((thresholds[None, None, None, :] - quality[None, ..., None]) / sds[:, None, None, None])
    return 1 + above.sum(axis=-1).mean(axis=0)


def _match(reference: np.ndarray, given: np.ndarray) -> bool:
    from evaluation.quality import reference_match

    return reference_match(
        reference=dict(zip(DIMENSIONS, reference.tolist(), strict=True)),
        tolerance={},  # the default Likert tolerance (1 point), as on an item saved without one
        scores=dict(zip(DIMENSIONS, given.tolist(), strict=True)),
    )


def _queue(
    rng: np.random.Generator,
    admitted: np.ndarray,
    items: int,
    gold: dict[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The main queue as :func:`evaluation.assignment.assignment_next` hands it out: raters ask in random order
    (all at the same pace); each gets an item with the fewest raters among those they have not had (ties at random)
    until every item has k raters; with ``gold``, a request is a gold item at GOLD_RATE (unseen ones, in the rater's
    own random order), graded at once, and the pause rule applies. Returns (item, rater) of the main ratings in the
    order given, and the gold record."""
    levels: list[list[int]] = [list(range(items))] + [[] for _ in range(RATERS_PER_ITEM - 1)]
    position = np.arange(items)
    level_of = np.zeros(items, dtype=int)
    had: dict[int, set[int]] = {int(rater): set() for rater in admitted}
    active = [int(rater) for rater in admitted]
    paused: set[int] = set()
    graded = dict.fromkeys(had, 0)
    matched = dict.fromkeys(had, 0)
    gold_next = dict.fromkeys(had, 0)
    order_item, order_rater = [], []
    remaining = items * RATERS_PER_ITEM
    while remaining and active:
        slot = int(rng.integers(len(active)))
        rater = active[slot]
        chosen = -1
        for level in levels:
            if not level:
                continue
            for _ in range(8):
                candidate = level[int(rng.integers(len(level)))]
                if candidate not in had[rater]:
                    chosen = candidate
                    break
            else:
                eligible = [candidate for candidate in level if candidate not in had[rater]]
                chosen = eligible[int(rng.integers(len(eligible)))] if eligible else -1
            if chosen >= 0:
                break
        if chosen < 0:  # nothing left for this rater
            active[slot] = active[-1]
            active.pop()
            continue
        if gold is not None and rng.random() < GOLD_RATE and gold_next[rater] < GOLD_POOL:
            index = gold["order"][rater, gold_next[rater]]
            gold_next[rater] += 1
            graded[rater] += 1
            matched[rater] += _match(gold["reference"][index], gold["given"][rater, index])
            if graded[rater] >= max(GOLD_MINIMUM, 1) and matched[rater] / graded[rater] < PASS_THRESHOLD:
                paused.add(rater)
                active[slot] = active[-1]
                active.pop()
            continue
        # The item moves up one level (swap-remove from its level's list).
        level = levels[level_of[chosen]]
        last = level[-1]
        level[position[chosen]] = last
        position[last] = position[chosen]
        level.pop()
        level_of[chosen] += 1
        if level_of[chosen] < RATERS_PER_ITEM:
            position[chosen] = len(levels[level_of[chosen]])
            levels[level_of[chosen]].append(chosen)
        had[rater].add(chosen)
        order_item.append(chosen)
        order_rater.append(rater)
        remaining -= 1
    record = {"paused": paused, "graded": graded, "matched": matched, "unfilled": remaining}
    return np.array(order_item), np.array(order_rater), record


def _difference(frame, keep: np.ndarray, variant_a: np.ndarray) -> float:
    """Mean score (dimensions averaged) of variant A's ratings minus variant B's, over the kept ratings."""
    mean = frame["mean_score"].to_numpy()
    a = variant_a[frame["item"].to_numpy()]
    return float(mean[keep & a].mean() - mean[keep & ~a].mean())


def _replicate(number: int) -> dict[str, Any]:
    import pandas as pd

    from evaluation.quality import exclusions

    rng = np.random.default_rng([BASE_SEED, number])
    # Items: participant p answered by A (item p) and by B (item PARTICIPANTS + p).
    participant = rng.normal(0, PARTICIPANT_SD, (PARTICIPANTS, len(DIMENSIONS)))
    variant_a = np.arange(2 * PARTICIPANTS) < PARTICIPANTS
    half = np.where(variant_a, LATENT_DIFFERENCE / 2, -LATENT_DIFFERENCE / 2)[:, None]
    quality = 3.0 + np.vstack([participant, participant]) + half + rng.normal(0, ITEM_SD, (2 * PARTICIPANTS, 3))
    expected = _expected_honest(quality).mean(axis=1)
    truth = float(expected[variant_a].mean() - expected[~variant_a].mean())
    # Raters: exact shares, shuffled.
    kind = np.full(RATERS, KIND_HONEST)
    kind[: round(SHARE_RANDOM * RATERS)] = KIND_RANDOM
    kind[round(SHARE_RANDOM * RATERS) : round((SHARE_RANDOM + SHARE_BIASED) * RATERS)] = KIND_BIASED
    kind = rng.permutation(kind)
    sd = rng.uniform(*HONEST_SD, RATERS)
    # Qualification: the same 10 items for everyone, reference = the true rounded score; a retry is a new draw.
    qualification = _latent(rng, QUALIFICATION_ITEMS)
    qualification_reference = np.clip(np.round(qualification), 1, 5).astype(int)
    attempts = np.zeros(RATERS, dtype=int)
    first_correct = np.zeros(RATERS, dtype=int)
    admitted = np.zeros(RATERS, dtype=bool)
    for rater in range(RATERS):
        for attempt in range(1 + QUALIFICATION_RETRIES):
            given = _scores(
                rng, qualification, np.full(QUALIFICATION_ITEMS, kind[rater]), np.full(QUALIFICATION_ITEMS, sd[rater])
            )
            correct = sum(_match(qualification_reference[i], given[i]) for i in range(QUALIFICATION_ITEMS))
            attempts[rater] = attempt + 1
            if attempt == 0:
                first_correct[rater] = correct
            if correct / QUALIFICATION_ITEMS >= PASS_THRESHOLD:
                admitted[rater] = True
                break
    # Gold pool: every rater's answers drawn up front (graded only when the queue hands the item out).
    gold_quality = _latent(rng, GOLD_POOL)
    gold = {
        "reference": np.clip(np.round(gold_quality), 1, 5).astype(int),
        "given": np.stack(
            [_scores(rng, gold_quality, np.full(GOLD_POOL, kind[r]), np.full(GOLD_POOL, sd[r])) for r in range(RATERS)]
        ),
        "order": np.argsort(rng.random((RATERS, GOLD_POOL)), axis=1),
    }

    def ratings(item: np.ndarray, rater: np.ndarray) -> pd.DataFrame:
        scores = _scores(rng, quality[item], kind[rater], sd[rater])
        median, sigma = np.where(kind[rater] == KIND_RANDOM, TIME_RANDOM[0], TIME_HONEST[0]), TIME_HONEST[1]
        sigma = np.where(kind[rater] == KIND_RANDOM, TIME_RANDOM[1], sigma)
        return pd.DataFrame(
            {
                "item": item,
                "rater": rater,
                "mean_score": scores.mean(axis=1),
                "time_spent_s": np.exp(np.log(median) + sigma * rng.normal(0, 1, len(item))),
            }
        )

    # World 1, no quality control: every rater rates, nothing is excluded.
    item, rater, _ = _queue(rng, np.arange(RATERS), 2 * PARTICIPANTS, None)
    everyone = ratings(item, rater)
    estimate_all = _difference(everyone, np.ones(len(everyone), dtype=bool), variant_a)
    # World 2, the site's protocol.
    item, rater, record = _queue(rng, np.flatnonzero(admitted), 2 * PARTICIPANTS, gold)
    site = ratings(item, rater)
    paused = record["paused"]
    below_gold = {
        r
        for r, n in record["graded"].items()
        if n >= max(GOLD_MINIMUM, 1) and record["matched"][r] / n < PASS_THRESHOLD
    }
    below_gold_any = {r for r, n in record["graded"].items() if n and record["matched"][r] / n < PASS_THRESHOLD}
    site["excluded"] = exclusions(site, below_gold=below_gold, paused=paused, min_seconds=MIN_SECONDS)
    keep = (site["excluded"] == "").to_numpy()
    estimate_excluded = _difference(site, keep, variant_a)
    estimate_site_unfiltered = _difference(site, np.ones(len(site), dtype=bool), variant_a)
    # The rule without "too fast" (rater-level rules only), and the "too fast" rule alone in the world without QC.
    no_fast = (
        exclusions(site, below_gold=below_gold, paused=paused, min_seconds=0, rules={"gold", "paused"}) == ""
    ).to_numpy()
    fast_only = (
        exclusions(everyone, below_gold=set(), paused=set(), min_seconds=MIN_SECONDS, rules={"fast"}) == ""
    ).to_numpy()
    flagged = ~admitted
    flagged[list(paused | below_gold)] = True
    flagged_any = flagged.copy()
    flagged_any[list(below_gold_any)] = True
    reasons = site["excluded"]
    return {
        "truth": truth,
        "estimate_all": estimate_all,
        "estimate_excluded": estimate_excluded,
        "error_all": abs(estimate_all - truth),
        "error_excluded": abs(estimate_excluded - truth),
        "error_site_unfiltered": abs(estimate_site_unfiltered - truth),
        "error_rater_rules_only": abs(_difference(site, no_fast, variant_a) - truth),
        "error_fast_rule_only": abs(_difference(everyone, fast_only, variant_a) - truth),
        "kind": kind,
        "flagged": flagged,
        "flagged_gold_without_minimum": flagged_any,
        "failed_qualification": ~admitted,
        "passed_first_attempt": admitted & (attempts == 1),
        "first_correct": first_correct,
        "paused": np.isin(np.arange(RATERS), list(paused)),
        "gold_graded": np.array([record["graded"].get(r, 0) for r in range(RATERS)]),
        "gold_matched": np.array([record["matched"].get(r, 0) for r in range(RATERS)]),
        "admitted": admitted,
        "main_per_rater_site": np.bincount(site["rater"], minlength=RATERS),
        "main_per_rater_all": np.bincount(everyone["rater"], minlength=RATERS),
        "excluded_share": float((~keep).mean()),
        "excluded_by_rule": {rule: float(reasons.str.contains(rule).mean()) for rule in ("gold", "fast", "paused")},
        "unfilled": record["unfilled"],
    }


def _summary(values: list[float] | np.ndarray) -> dict[str, Any]:
    """Mean over replicates, its 95 % t interval, and the 2.5–97.5 % range of the replicates."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    half = float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    low, high = np.percentile(values, [2.5, 97.5])
    return {
        "mean": round(mean, 4),
        "ci95_of_mean": [round(mean - half, 4), round(mean + half, 4)],
        "replicates_2.5_97.5": [round(float(low), 4), round(float(high), 4)],
    }


def _share(replicates: list[dict[str, Any]], key: str, kind: int) -> dict[str, Any]:
    """Share of the raters of ``kind`` with ``key`` true: the mean of the per-replicate shares, and the pooled count
    over replicates (raters of different replicates are independent) with its Wilson interval."""
    from evaluation.quality import wilson_interval

    per = [float(r[key][r["kind"] == kind].mean()) for r in replicates]
    hits = int(sum(r[key][r["kind"] == kind].sum() for r in replicates))
    trials = int(sum((r["kind"] == kind).sum() for r in replicates))
    interval = wilson_interval(hits, trials)
    assert interval is not None
    return {
        "share": round(float(np.mean(per)), 4),
        "raters": f"{hits}/{trials}",
        "wilson95": [round(interval[0], 4), round(interval[1], 4)],
    }


def run() -> dict[str, Any]:
    from evaluation.quality import wilson_interval

    started = time.perf_counter()
    replicates = [_replicate(number) for number in range(REPLICATES)]
    seconds = time.perf_counter() - started
    shares = {
        key: {KIND_NAMES[kind]: _share(replicates, key, kind) for kind in KIND_NAMES}
        for key in ("flagged", "failed_qualification", "passed_first_attempt", "paused", "flagged_gold_without_minimum")
    }
    errors = {
        key: _summary([r[key] for r in replicates])
        for key in (
            "error_all",
            "error_excluded",
            "error_site_unfiltered",
            "error_rater_rules_only",
            "error_fast_rule_only",
        )
    }
    paired = _summary([r["error_all"] - r["error_excluded"] for r in replicates])
    gold = {}
    for kind, name in KIND_NAMES.items():
        graded = sum(int(r["gold_graded"][r["admitted"] & (r["kind"] == kind)].sum()) for r in replicates)
        matched = sum(int(r["gold_matched"][r["admitted"] & (r["kind"] == kind)].sum()) for r in replicates)
        admitted = sum(int((r["admitted"] & (r["kind"] == kind)).sum()) for r in replicates)
        interval = wilson_interval(matched, graded)
        gold[name] = {
            "admitted_raters": admitted,
            "gold_items_per_admitted_rater": round(graded / admitted, 2) if admitted else None,
            "gold_accuracy": round(matched / graded, 4) if graded else None,
            "wilson95": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
        }
    qualification_accuracy = {}
    for kind, name in KIND_NAMES.items():
        correct = sum(int(r["first_correct"][r["kind"] == kind].sum()) for r in replicates)
        trials = sum(int((r["kind"] == kind).sum()) for r in replicates) * QUALIFICATION_ITEMS
        interval = wilson_interval(correct, trials)
        assert interval is not None
        qualification_accuracy[name] = {
            "item_accuracy_first_attempt": round(correct / trials, 4),
            "wilson95": [round(interval[0], 4), round(interval[1], 4)],
        }
    admitted_gold = [r["gold_graded"][r["admitted"]] for r in replicates]
    random_flagged = shares["flagged"]["random"]["share"]
    honest_flagged = shares["flagged"]["honest"]["share"]
    error_all, error_excluded = errors["error_all"]["mean"], errors["error_excluded"]["mean"]
    return {
        "random_flagged": random_flagged,
        "honest_flagged": honest_flagged,
        "biased_flagged": shares["flagged"]["biased"]["share"],
        "difference_error_all": error_all,
        "difference_error_excluded": error_excluded,
        "goals": GOALS,
        "goal_met": {
            "random_flagged": random_flagged >= GOALS["random_flagged_min"],
            "honest_flagged": honest_flagged <= GOALS["honest_flagged_max"],
            # Met only when the paired 95 % interval of (error all − error excluded) lies above 0.
            "exclusions_reduce_error": paired["ci95_of_mean"][0] > 0,
        },
        "difference_error_reduction_paired": paired,
        "difference_errors": errors,
        "truth_difference": _summary([r["truth"] for r in replicates]),
        "estimate_all": _summary([r["estimate_all"] for r in replicates]),
        "estimate_excluded": _summary([r["estimate_excluded"] for r in replicates]),
        "latent_difference": LATENT_DIFFERENCE,
        "replicates": REPLICATES,
        "replicates_where_exclusions_reduce_error": int(sum(r["error_excluded"] < r["error_all"] for r in replicates)),
        "shares_by_rater_kind": shares,
        "qualification": qualification_accuracy,
        "gold": gold,
        "gold_items_per_admitted_rater": round(float(np.mean([g.mean() for g in admitted_gold])), 2),
        "admitted_raters_with_gold_minimum": round(
            float(np.mean([(g >= GOLD_MINIMUM).mean() for g in admitted_gold])), 4
        ),
        "main_ratings_per_rater": {
            "no_quality_control": round(float(np.mean([r["main_per_rater_all"].mean() for r in replicates])), 2),
            "site_per_admitted_rater": round(
                float(np.mean([r["main_per_rater_site"][r["admitted"]].mean() for r in replicates])), 2
            ),
        },
        "excluded_share_of_site_ratings": round(float(np.mean([r["excluded_share"] for r in replicates])), 4),
        "excluded_share_by_rule": {
            rule: round(float(np.mean([r["excluded_by_rule"][rule] for r in replicates])), 4)
            for rule in ("gold", "fast", "paused")
        },
        "unfilled_places": int(sum(r["unfilled"] for r in replicates)),
        "seconds_simulation": round(seconds, 2),
        "seconds_per_replicate": round(seconds / REPLICATES, 3),
        "setup": (
            f"{REPLICATES} replicates (numpy default_rng([{BASE_SEED}, replicate])). Items: {PARTICIPANTS} participants "
            f"x 2 variants = {2 * PARTICIPANTS} results items, {len(DIMENSIONS)} Likert dimensions 1–5. Latent quality "
            f"per item and dimension = 3.0 + participant effect N(0, {PARTICIPANT_SD}) (shared by the participant's two "
            f"items) ± {LATENT_DIFFERENCE / 2} (A +, B −) + item effect N(0, {ITEM_SD}). Truth = the variant difference "
            f"(A − B, dimensions averaged) of the expected score of an honest rater on these items (the latent "
            f"difference {LATENT_DIFFERENCE} compressed by rounding and clipping at 1 and 5). Raters: {RATERS}, exactly "
            f"{SHARE_RANDOM:.0%} random (uniform 1–5 on each dimension), {SHARE_BIASED:.0%} biased (latent + {BIAS} + "
            f"noise, rounded, clipped), the rest honest (latent + noise, rounded, clipped); every non-random rater has "
            f"noise sd drawn uniformly in {list(HONEST_SD)}. Time per item lognormal: median {TIME_HONEST[0]} s, sigma "
            f"{TIME_HONEST[1]} (honest, biased); median {TIME_RANDOM[0]} s, sigma {TIME_RANDOM[1]} (random). Queue: "
            f"k = {RATERS_PER_ITEM} distinct raters per item, raters ask in random order at the same pace, each gets an "
            f"item with the fewest raters among those they have not had (ties at random), as assignment_next does. "
            f"World 'all' (no quality control): all {RATERS} raters rate, no qualification, no gold, nothing excluded. "
            f"World 'excluded' (the site's protocol, its defaults): qualification = the same {QUALIFICATION_ITEMS} "
            f"items for all (reference = true rounded score, each item matched by reference_match on all three "
            f"dimensions with tolerance {TOLERANCE}), pass at >= {PASS_THRESHOLD}, {QUALIFICATION_RETRIES} retry with "
            f"new noise; raters who fail get no main items (the others take their share). A main-queue request is a "
            f"gold item with probability {GOLD_RATE} (a pool of {GOLD_POOL} gold items, reference = true rounded "
            f"score, each rater's unseen ones in their own random order), graded at once; a rater is paused (no more "
            f"items) when after >= {GOLD_MINIMUM} gold items their gold accuracy < {PASS_THRESHOLD}. 'Below gold "
            f"threshold' at the end uses the same rule (>= {GOLD_MINIMUM} gold items, accuracy < {PASS_THRESHOLD}); "
            f"'flagged_gold_without_minimum' shows the alternative without the minimum. Study setting "
            f"min_seconds_per_item = {MIN_SECONDS} s (the site's default is 0, i.e. off). Excluded ratings: "
            f"evaluation.quality.exclusions (gold, fast, paused). A rater is flagged when they failed qualification, "
            f"were paused or are below the gold threshold. Estimate = mean score of variant A's ratings minus variant "
            f"B's (dimensions averaged); error = |estimate − truth| per replicate."
        ),
    }
