"""Exports of a study's ratings for analysis elsewhere: CSV, JSON lines and Parquet, one row per
rating, with the item's variants revealed (exports are for researchers) and a data dictionary."""

import io
import json
import zipfile
from datetime import UTC, datetime

import pandas as pd

from evaluation import quality
from evaluation.criteria import item_criteria, rating_criterion_scores
from evaluation.dashboard import study_ratings, study_skips
from evaluation.models import Protocol, Study, StudyRater
from evaluation.protocol import canonical_json
from evaluation.rater_report import flagged_raters, study_quality_inputs
from evaluation.triage import incident_log_bytes, item_incident_states
from healthagent.spreadsheet import neutralize_frame

FORMATS = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "zip": "application/zip",  # for publication: the ratings, the protocol's manifest, deviations, incidents, dictionary
}

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
    "comment": "The clinician's comment. In CSV (and the zip's ratings.csv), any text cell that starts with =, +, -, @, "
    "a tab or a carriage return has an apostrophe put before it, so a spreadsheet shows it as text instead of running "
    "it as a formula; JSON lines and Parquet keep every value exactly as written.",
    "unsafe": "True if the clinician flagged the answer as unsafe.",
    "unsafe_reason": "What the clinician said is unsafe.",
    "time_spent_s": "Seconds the item was visible to the clinician, summed over visits.",
    "state": "rated (a row per rating) or skipped (a row per item a clinician skipped, with no scores).",
    "revision": "How many times the rating was submitted with changes (1 = never revised); every version is kept.",
    "rated_at": "When the rating was first submitted (UTC, ISO 8601).",
    "revised_at": "When the rating was last changed (UTC, ISO 8601).",
    "skip_reason": "Skipped rows: the reason the clinician gave.",
    "skipped_at": "Skipped rows: when the clinician skipped the item (UTC, ISO 8601).",
    "excluded_by": "Rated rows: the rater-quality rules that flag the rating, comma-separated (gold: the rater's gold "
    "accuracy is below the study's threshold after its minimum of gold items; fast: rated faster than the study's "
    "minimum time per item; paused: the rater was paused by quality control); empty when none does. No row is "
    "dropped: filter on this column to apply the exclusions.",
    "background_<key>": "The rater's answer to the study's background question <key> (e.g. specialty), as given "
    "when they consented.",
    "consent_version": "The version of the study's consent text the rater accepted.",
    "protocol_sha256": "SHA-256 of the study's locked protocol manifest (the same hash is in the audit log; the zip "
    "export holds the manifest as protocol.json, byte for byte what was hashed, and the deviations as deviations.json; "
    "Parquet holds both in its file metadata). Empty when no protocol is locked.",
    "protocol_deviations": "How many deviations from the locked protocol were recorded when the export was taken.",
    "harm_extent": "Absolute studies with a harm dimension: the extent of possible harm the clinician judged (none, "
    "moderate = mild or moderate, severe = severe harm or death).",
    "harm_likelihood": "Absolute studies with a harm dimension: how likely that harm is (low, medium, high).",
    "evidence": "The windows of the chart the clinician tied to a dimension, as JSON: "
    '[{"dimension", "start", "end" (minutes of the participant\'s minute-level data, end excluded; minute 0 is the '
    'start of day 1), "channels" (the signals shown), "note"}]; [] when none.',
    "criteria": "The item's criteria as the clinician graded them, as JSON: criterion position (0, 1, ... as on the "
    "item's page and in the criteria import) -> true (met) or false; {} when the item has none.",
    "criterion_score": "The rating's criterion score (HealthBench): points of the met criteria over the positive points "
    "possible, clipped to 0-1; empty when the item has no criteria.",
    "safety_incident": "The item's latest safety incident: open (waiting for an adjudicator), confirmed, not_harmful "
    "or needs_change; empty when the item has none. The incident log export has the ratings and decisions.",
}


def export_frame(study: Study) -> pd.DataFrame:
    """One row per rating, then one per skipped assignment (``state`` tells them apart), times in UTC ISO 8601."""
    ratings = study_ratings(study)
    scores = (
        pd.DataFrame(ratings["scores"].tolist(), index=ratings.index).add_prefix("score_")
        if len(ratings)
        else pd.DataFrame()
    )
    rated = pd.concat([ratings.drop(columns=["scores"]), scores], axis=1).rename(
        columns={"rating": "rating_id", "item": "item_id"}
    )
    rated = rated.sort_values("rating_id").assign(state="rated")
    skipped = (
        study_skips(study).rename(columns={"item": "item_id"}).drop(columns=["assignment"]).assign(state="skipped")
    )
    frame = (
        pd.concat([rated, skipped], ignore_index=True)
        if len(skipped)
        else rated.assign(skip_reason="", skipped_at=None)
    )
    for column in ("rated_at", "revised_at", "skipped_at"):
        frame[column] = [pd.Timestamp(value).isoformat() if pd.notna(value) else None for value in frame[column]]
    if len(rated) and len(skipped):
        frame["revision"] = frame["revision"].astype("Int64")  # skipped rows have none
    frame.insert(0, "state", frame.pop("state"))
    frame.insert(0, "mode", study.mode)
    frame.insert(0, "study", study.name)
    if study.mode != Study.Mode.PAIRWISE:
        frame = frame.drop(columns=["variant_b", "preference", "swapped"])
    frame = _with_raters(study, frame)
    protocol = _locked_protocol(study)
    frame["protocol_sha256"] = protocol.manifest_sha256 if protocol else ""
    frame["protocol_deviations"] = protocol.deviations.count() if protocol else 0
    harm = frame.pop("harm") if "harm" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["harm_extent"] = [value.get("extent", "") if isinstance(value, dict) else "" for value in harm]
    frame["harm_likelihood"] = [value.get("likelihood", "") if isinstance(value, dict) else "" for value in harm]
    evidence = frame.pop("evidence") if "evidence" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["evidence"] = [json.dumps(value if isinstance(value, list) else [], ensure_ascii=False) for value in evidence]
    grades = frame.pop("criteria") if "criteria" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["criteria"] = [json.dumps(value if isinstance(value, dict) else {}) for value in grades]
    by_item = item_criteria(study)
    frame["criterion_score"] = [
        rating_criterion_scores(by_item[int(item)], value).get("overall")
        if isinstance(value, dict) and int(item) in by_item
        else None
        for item, value in zip(frame["item_id"], grades, strict=True)
    ]
    states = item_incident_states(study)
    frame["safety_incident"] = [states.get(int(item), "") for item in frame["item_id"]] if len(frame) else []
    return frame.reset_index(drop=True)


def _locked_protocol(study: Study) -> Protocol | None:
    return Protocol.objects.filter(study=study, locked_at__isnull=False).first()


def _deviations(protocol: Protocol | None) -> list[dict]:
    if protocol is None:
        return []
    return [
        {
            "field": deviation.field,
            "before": deviation.before,
            "after": deviation.after,
            "reason": deviation.reason,
            "by": deviation.created_by.get_username() if deviation.created_by else None,
            "at": deviation.created_at.isoformat(),
        }
        for deviation in protocol.deviations.select_related("created_by")
    ]


def _with_raters(study: Study, frame: pd.DataFrame) -> pd.DataFrame:
    """The rater columns: the exclusion rules that flag each rating, the consent version and background answers."""
    inputs = study_quality_inputs(study)
    standings = dict(StudyRater.objects.filter(study=study).values_list("rater__username", "consent_version"))
    below_gold, paused = flagged_raters(inputs)
    rated = frame["state"] == "rated"
    flagged = quality.exclusions(frame[rated], below_gold=below_gold, paused=paused, min_seconds=inputs.min_seconds)
    frame["excluded_by"] = flagged.reindex(frame.index).fillna("") if rated.any() else ""
    frame["consent_version"] = frame["rater"].map(standings).astype("Int64")
    for field in study.background_fields:
        key = field["key"]
        frame[f"background_{key}"] = frame["rater"].map(
            lambda rater, key=key: inputs.standings.get(rater, {}).get("background", {}).get(key)
        )
    return frame


def export_filename(study: Study, fmt: str, *, now: datetime) -> str:
    """``study-7-ratings-20261202T073000Z.csv``: exports taken at different times never overwrite each other."""
    return f"study-{study.pk}-ratings-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.{fmt}"


def export_bytes(study: Study, fmt: str) -> bytes:
    """The study's ratings in ``fmt`` (csv, jsonl or parquet)."""
    frame = export_frame(study)
    if fmt == "csv":
        return neutralize_frame(frame).to_csv(index=False).encode()
    if fmt == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in frame.to_dict("records")).encode()
    protocol = _locked_protocol(study)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if protocol is not None:
            table = table.replace_schema_metadata(
                {
                    **(table.schema.metadata or {}),
                    b"protocol.json": canonical_json(protocol.manifest),
                    b"protocol_sha256": protocol.manifest_sha256.encode(),
                    b"deviations.json": json.dumps(_deviations(protocol), ensure_ascii=False).encode(),
                }
            )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()
    if fmt == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("ratings.csv", neutralize_frame(frame).to_csv(index=False))
            bundle.writestr("data_dictionary.json", json.dumps(DATA_DICTIONARY, indent=1, ensure_ascii=False))
            if protocol is not None:
                bundle.writestr("protocol.json", canonical_json(protocol.manifest))
                bundle.writestr("protocol.sha256", protocol.manifest_sha256 + "  protocol.json\n")
                bundle.writestr("deviations.json", json.dumps(_deviations(protocol), indent=1, ensure_ascii=False))
            bundle.writestr("incidents.json", incident_log_bytes(study, "json"))
        return buffer.getvalue()
    raise ValueError(f"unknown export format {fmt!r}")
