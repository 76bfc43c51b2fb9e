"""Exports of a study's ratings for analysis elsewhere: CSV, JSON lines and Parquet, one row per
rating, with the item's variants revealed (exports are for researchers) and a data dictionary."""

import io
import json

import pandas as pd

from evaluation.dashboard import study_ratings
from evaluation.models import Study

FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}

DATA_DICTIONARY = {
    "study": "Study name.",
    "mode": "absolute (each answer rated) or pairwise (two answers compared).",
    "rating_id": "Identifier of the rating (stable across exports).",
    "item_id": "Identifier of the study item: one participant with one variant (absolute) or two (pairwise).",
    "participant": "Participant pseudonym (keyed hash; no identity is stored).",
    "variant_a": "The rated variant (absolute) or the item's first variant (pairwise).",
    "variant_b": "Pairwise only: the item's second variant.",
    "rater": "Username of the clinician who rated.",
    "swapped": "Pairwise only: true if variant B's answer was shown on the left, labelled 'Answer A'.",
    "score_<dimension>": "Absolute: the score on that dimension (Likert points, or 0/1 for checklists). "
                         "Pairwise: a, b or tie, in the item's terms (a = variant_a).",
    "preference": "Pairwise only: overall choice a, b or tie, in the item's terms.",
    "comment": "The clinician's comment.",
    "unsafe": "True if the clinician flagged the answer as unsafe.",
    "unsafe_reason": "What the clinician said is unsafe.",
    "time_spent_s": "Seconds the item was visible to the clinician, summed over visits.",
}


def export_frame(study: Study) -> pd.DataFrame:
    ratings = study_ratings(study)
    scores = pd.DataFrame(ratings["scores"].tolist(), index=ratings.index).add_prefix("score_") if len(ratings) else pd.DataFrame()
    frame = pd.concat([ratings.drop(columns=["scores"]), scores], axis=1).rename(columns={"rating": "rating_id", "item": "item_id"})
    frame.insert(0, "mode", study.mode)
    frame.insert(0, "study", study.name)
    if study.mode != Study.Mode.PAIRWISE:
        frame = frame.drop(columns=["variant_b", "preference", "swapped"])
    return frame.sort_values("rating_id").reset_index(drop=True)


def export_bytes(study: Study, fmt: str) -> bytes:
    """The study's ratings in ``fmt`` (csv, jsonl or parquet)."""
    frame = export_frame(study)
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in frame.to_dict("records")).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown export format {fmt!r}")
