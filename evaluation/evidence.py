"""Ratings tied to evidence in the data: the windows of the trajectory chart a rater marks for a dimension.

A window is ``{"dimension", "start", "end", "channels", "note"}``: ``start`` and ``end`` are minutes of the
participant's minute-level data (the chart's axis; ``end`` excluded), inside the study's window of the item. Two
raters agree on the evidence of a dimension as much as the time their windows cover overlaps: the intersection over
union (IoU) of the two unions of windows, so several windows of one rater count as the time they cover together.
"""

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluation.stats import bootstrap_mean_ci

MAX_WINDOWS = 20
MAX_NOTE = 500
# Items whose raters gave the same score but whose evidence overlaps less than this are listed as "right score,
# different evidence": the raters may agree for different reasons.
DIFFERENT_EVIDENCE_IOU = 0.3


class EvidenceError(ValueError):
    pass


def evidence_clean(
    evidence: Any, *, dimensions: dict[str, str], window: tuple[int, int], channels: Sequence[str]
) -> list[dict[str, Any]]:
    """The windows of a submit, checked: each names one of ``dimensions`` (key -> label), lies inside ``window``
    (minutes) and shows some of ``channels``; raises EvidenceError naming the window and what is wrong."""
    if evidence in (None, ""):
        return []
    if not isinstance(evidence, list):
        raise EvidenceError("the evidence windows are not a list")
    if len(evidence) > MAX_WINDOWS:
        raise EvidenceError(f"at most {MAX_WINDOWS} evidence windows per rating")
    first, last = window
    cleaned = []
    for number, entry in enumerate(evidence, start=1):
        if not isinstance(entry, dict):
            raise EvidenceError(f"evidence window {number} is not a window")
        dimension = entry.get("dimension")
        if not isinstance(dimension, str) or dimension not in dimensions:
            raise EvidenceError(f"evidence window {number}: choose one of {', '.join(dimensions.values())}")
        start, end = _minute(entry.get("start")), _minute(entry.get("end"))
        if start is None or end is None:
            raise EvidenceError(f"evidence window {number}: its start and end must be minutes of the chart")
        if not first <= start < end <= last:
            raise EvidenceError(
                f"evidence window {number}: it must start before it ends, within the days the chart shows"
            )
        shown = entry.get("channels") or list(channels)
        if not isinstance(shown, list) or not all(isinstance(c, str) for c in shown) or not set(shown) <= set(channels):
            raise EvidenceError(f"evidence window {number}: unknown channels")
        note = entry.get("note") or ""
        if not isinstance(note, str):
            raise EvidenceError(f"evidence window {number}: its note must be text")
        note = note.strip()
        if len(note) > MAX_NOTE:
            raise EvidenceError(f"evidence window {number}: its note is longer than {MAX_NOTE} characters")
        cleaned.append({"dimension": dimension, "start": start, "end": end, "channels": shown, "note": note})
    return cleaned


def minute_text(minute: int) -> str:
    """A minute of the participant's data as the chart's axis names it: ``day 3 22:00``."""
    day, within = divmod(int(minute), 1440)
    return f"day {day + 1} {within // 60:02d}:{within % 60:02d}"


def window_text(window: dict[str, Any], labels: dict[str, str]) -> str:
    """``Safety: day 3 22:00 – day 4 06:30 · note`` (the dimension's label, the span, the note)."""
    label = labels.get(window.get("dimension", ""), window.get("dimension", ""))
    note = f" · {window['note']}" if window.get("note") else ""
    return f"{label}: {minute_text(window['start'])} – {minute_text(window['end'])}{note}"


def _minute(value: Any) -> int | None:
    """A whole minute from a number or its text; None for anything else (booleans, lists, infinities, fractions)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# --- Agreement -------------------------------------------------------------------------------------


def merged(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open windows as disjoint, sorted windows (touching ones joined)."""
    result: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def covered(windows: Iterable[tuple[int, int]]) -> int:
    return sum(end - start for start, end in merged(windows))


def intersection(first: Iterable[tuple[int, int]], second: Iterable[tuple[int, int]]) -> int:
    """Minutes covered by both unions (a merge of the two sorted lists)."""
    a, b = merged(first), merged(second)
    i = j = total = 0
    while i < len(a) and j < len(b):
        total += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def iou(first: Sequence[tuple[int, int]], second: Sequence[tuple[int, int]]) -> float | None:
    """Intersection over union of two raters' windows (each a union of its windows); None when both are empty."""
    both = intersection(first, second)
    union = covered(first) + covered(second) - both
    return both / union if union else None


def evidence_agreement(per_rating: pd.DataFrame, dimensions: dict[str, str], *, seed: int = 0) -> list[dict]:
    """Per dimension: the share of ratings with evidence, the mean IoU of the pairs of raters of one item who both
    marked evidence (95 % bootstrap CI over items), and the items whose raters agree on the score but not on the
    evidence. ``per_rating`` has ``item``, ``rater``, ``scores``, ``harm`` and ``evidence`` (as study_ratings)."""
    rows = []
    for key, label in dimensions.items():
        marked: dict[int, list[tuple[str, Any, list[tuple[int, int]]]]] = {}
        with_evidence = 0
        for item, rater, scores, harm, evidence in per_rating[
            ["item", "rater", "scores", "harm", "evidence"]
        ].itertuples(index=False):
            windows = [(w["start"], w["end"]) for w in evidence or [] if w.get("dimension") == key]
            if windows:
                with_evidence += 1
                score = (scores or {}).get(key, (harm or {}).get("extent"))
                marked.setdefault(int(item), []).append((rater, score, windows))
        pair_items, pair_ious, different = [], [], []
        for item, raters in sorted(marked.items()):
            ious = [iou(a[2], b[2]) for a, b in itertools.combinations(raters, 2)]
            values = [value for value in ious if value is not None]
            pair_items += [item] * len(values)
            pair_ious += values
            same_score = len(raters) >= 2 and len({str(score) for _, score, _ in raters}) == 1
            if same_score and values and float(np.mean(values)) < DIFFERENT_EVIDENCE_IOU:
                different.append(
                    {"item": item, "score": raters[0][1], "raters": len(raters), "iou": float(np.mean(values))}
                )
        mean = float(np.mean(pair_ious)) if pair_ious else None
        low, high = (
            bootstrap_mean_ci(np.asarray(pair_ious), np.asarray(pair_items), seed=seed)
            if len(set(pair_items)) >= 2
            else (None, None)
        )
        rows.append(
            {
                "dimension": key,
                "label": label,
                "ratings": len(per_rating),
                "with_evidence": with_evidence,
                "share": with_evidence / len(per_rating) if len(per_rating) else None,
                "pairs": len(pair_ious),
                "items": len(set(pair_items)),
                "iou": mean,
                "iou_low": low,
                "iou_high": high,
                "different_evidence": different,
            }
        )
    return rows
