"""A participant's timeline as tokens, and back.

A :class:`ParticipantRecord` is what any source (the simulator, the site's database) hands over:
demographics, sparse measurements and events, with days counted from the record's day 0. The
:class:`Tokenizer` turns it into one token per measurement or event, sorted by day:

- a **code** (what happened: a biomarker, a diet pattern, a medication, a diagnosis...), its
  **modality**, and for measurements a **quantile bin** of the value (bins fitted per biomarker
  on training records, 0 for tokens without a value);
- the **day** and the participant's **age** that day, from which the model's time encoding is made.

Dense signals are summarized before tokenization: CGM and daily wearable metrics become one token
per biomarker per ``summary_block_days`` block (the block's mean, dated on its last day with data).
Missing data is simply absent tokens. The output vocabulary joins code and bin: a measurement
token is ``(biomarker, bin)``, so next-token prediction gives the value's distribution too.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeling.ml.data.clinical import BIOMARKERS, ENDPOINTS, INTERVENTIONS

DIET_PATTERNS = ("high_sugar", "high_fat", "balanced", "high_fibre", "late_meal")
MEDICATIONS = ("statin", "antihypertensive")
TREATMENTS = tuple(
    intervention.name for intervention in INTERVENTIONS
)  # medications share the slot of the same treatment
HARD_ENDPOINTS = ("cardiovascular_event", "stroke", "heart_failure", "death")
SUMMARIZED_MODALITIES = ("cgm", "wearable_daily")
SUMMARY_BLOCK_DAYS = 14  # CGM and daily wearable values become one token per biomarker per block of this many days
MODALITIES = (
    "static",
    "lab",
    "blood_pressure",
    "body_composition",
    "cgm",
    "wearable_daily",
    "diet",
    "medication",
    "intervention",
    "diagnosis",
    "endpoint",
)


def _codes() -> list[tuple[str, str]]:
    """(code name, modality) of every code; the order fixes the vocabulary."""
    codes = [("sex:female", "static"), ("sex:male", "static"), ("smoker:yes", "static"), ("smoker:no", "static")]
    codes += [(f"measure:{biomarker.name}", biomarker.modality) for biomarker in BIOMARKERS]
    codes += [(f"diet:{name}", "diet") for name in DIET_PATTERNS]
    codes += [(f"medication:{name}", "medication") for name in MEDICATIONS]
    codes += [(f"intervention:{intervention.name}", "intervention") for intervention in INTERVENTIONS]
    codes += [
        (
            f"{'endpoint' if name in HARD_ENDPOINTS else 'diagnosis'}:{name}",
            "endpoint" if name in HARD_ENDPOINTS else "diagnosis",
        )
        for name in ENDPOINTS
    ]
    return codes


CODES = _codes()
CODE_INDEX = {name: index for index, (name, _) in enumerate(CODES)}
MODALITY_INDEX = {name: index for index, name in enumerate(MODALITIES)}
BIOMARKER_NAMES = tuple(biomarker.name for biomarker in BIOMARKERS)


@dataclass
class ParticipantRecord:
    """Everything the twin may know about one participant, days counted from day 0."""

    age_years: float | None  # at day 0; None when unknown
    sex: str | None  # "female", "male" or None
    smoker: bool | None
    measurements: list[dict[str, Any]] = field(default_factory=list)  # {day, name, value}
    events: list[dict[str, Any]] = field(
        default_factory=list
    )  # {day, kind, name}: diet, medication, intervention, diagnosis, endpoint
    last_day: int = 0  # the last day the record covers
    height_m: float | None = None  # None when unknown; obesity's risk is read from the weight where it is known


@dataclass
class Tokens:
    """One participant's tokens, each array of shape (tokens,)."""

    ids: np.ndarray  # int64: the joint (code, bin) vocabulary index
    codes: np.ndarray  # int64: index into CODES
    bins: np.ndarray  # int64: 1..bins for measurements, 0 otherwise
    days: np.ndarray  # int64
    age_years: float | None
    last_day: int
    values: np.ndarray | None = None  # float: a measurement's own value (before binning), NaN for other tokens
    height_m: float | None = None  # the record's: not a token (the model does not see it), the risk read-out uses it

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, stop_day: int) -> "Tokens":
        """The tokens up to and including ``stop_day``."""
        keep = self.days <= stop_day
        values = None if self.values is None else self.values[keep]
        return Tokens(
            self.ids[keep],
            self.codes[keep],
            self.bins[keep],
            self.days[keep],
            self.age_years,
            stop_day,
            values,
            self.height_m,
        )


TAIL_LEVELS = (0.005, 0.01, 0.02, 0.04)


def quantile_levels(bins: int) -> np.ndarray:
    """The quantile levels of the ``bins - 1`` interior edges: evenly spaced between the 4th and the 96th
    percentiles, and at the 0.5th, 1st, 2nd (and 98th, 99th, 99.5th) percentiles in the tails, where the
    diagnostic limits lie (LDL 190 mg/dL, eGFR 60, HbA1c 6.5 %). Evenly spaced bins left the top 4 % of LDL
    (from 172 mg/dL) in one open bin, so the model could not tell 175 from 195 (docs/results/twin-tiny/README.md).
    Fewer than 20 bins are evenly spaced: the tails would crowd out the middle."""
    if bins < 20:
        return np.arange(1, bins) / bins
    tails = np.array(TAIL_LEVELS)
    count = bins - 1 - 2 * len(tails)
    middle = tails[-1] + (1 - 2 * tails[-1]) * np.arange(1, count + 1) / (count + 1)
    return np.concatenate([tails, middle, 1 - tails[::-1]])


class Tokenizer:
    """Quantile bins per biomarker, the joint vocabulary, encoding and decoding."""

    def __init__(
        self,
        edges: dict[str, list[float]],
        centers: dict[str, list[float]],
        *,
        summary_block_days: int = SUMMARY_BLOCK_DAYS,
    ):
        self.edges = {
            name: np.asarray(values, dtype=float) for name, values in edges.items()
        }  # (bins - 1,) interior edges
        self.centers = {
            name: np.asarray(values, dtype=float) for name, values in centers.items()
        }  # (bins,) median per bin
        self.bins = len(next(iter(self.centers.values())))
        self.summary_block_days = summary_block_days
        # Joint vocabulary: index 0 is padding; measurement codes take `bins` ids each, other codes one.
        self.code_first_id = np.zeros(len(CODES), dtype=np.int64)
        next_id = 1
        for index, (name, _) in enumerate(CODES):
            self.code_first_id[index] = next_id
            next_id += self.bins if name.startswith("measure:") else 1
        self.vocab_size = next_id
        self.id_code = np.zeros(self.vocab_size, dtype=np.int64)
        self.id_bin = np.zeros(self.vocab_size, dtype=np.int64)
        for index, (name, _) in enumerate(CODES):
            width = self.bins if name.startswith("measure:") else 1
            self.id_code[self.code_first_id[index] : self.code_first_id[index] + width] = index
            if width > 1:
                self.id_bin[self.code_first_id[index] : self.code_first_id[index] + width] = np.arange(1, width + 1)
        self.id_modality = np.array([MODALITY_INDEX[CODES[code][1]] for code in self.id_code])
        self.id_modality[0] = MODALITY_INDEX["static"]
        # Standardized bin centers: the value a measurement token carries into the model.
        self.id_value = np.zeros(self.vocab_size, dtype=np.float32)
        for name in BIOMARKER_NAMES:
            first = self.code_first_id[CODE_INDEX[f"measure:{name}"]]
            name_centers = self.centers[name]
            spread = max(float(name_centers[-1] - name_centers[0]) / 4.0, 1e-6)
            self.id_value[first : first + self.bins] = (name_centers - np.median(name_centers)) / spread

    # -- fitting and persistence -------------------------------------------------------------
    @classmethod
    def fit(
        cls, records: list[ParticipantRecord], *, bins: int = 24, summary_block_days: int = SUMMARY_BLOCK_DAYS
    ) -> "Tokenizer":
        """Quantile bins of every biomarker's (summarized) values in ``records``, at :func:`quantile_levels`."""
        probe = cls(
            {name: [0.0] * (bins - 1) for name in BIOMARKER_NAMES},
            {name: [0.0] * bins for name in BIOMARKER_NAMES},
            summary_block_days=summary_block_days,
        )
        values: dict[str, list[float]] = {name: [] for name in BIOMARKER_NAMES}
        for record in records:
            for measurement in probe.summarize(record.measurements):
                values[measurement["name"]].append(measurement["value"])
        edges, centers = {}, {}
        for name, observed in values.items():
            observed_array = np.asarray(observed if observed else [0.0], dtype=float)
            interior = np.quantile(observed_array, quantile_levels(bins))
            interior = np.maximum.accumulate(
                interior + np.arange(bins - 1) * 1e-9
            )  # strictly increasing, even for ties
            bin_of = np.searchsorted(interior, observed_array, side="right")
            centers[name] = [
                float(np.median(observed_array[bin_of == b]))
                if np.any(bin_of == b)
                else float(interior[min(b, bins - 2)])
                for b in range(bins)
            ]
            edges[name] = interior.tolist()
        return cls(edges, centers, summary_block_days=summary_block_days)

    def save(self, path: Path) -> None:
        Path(path).write_text(
            json.dumps(
                {
                    "edges": {k: v.tolist() for k, v in self.edges.items()},
                    "centers": {k: v.tolist() for k, v in self.centers.items()},
                    "summary_block_days": self.summary_block_days,
                    "codes": [name for name, _ in CODES],
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        data = json.loads(Path(path).read_text())
        if data["codes"] != [name for name, _ in CODES]:
            raise ValueError("the tokenizer was saved with another code list")
        return cls(data["edges"], data["centers"], summary_block_days=data["summary_block_days"])

    # -- encoding ----------------------------------------------------------------------------
    def summarize(self, measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """CGM and daily wearable values averaged per block of ``summary_block_days`` days; others unchanged."""
        kept: list[dict[str, Any]] = []
        blocks: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for measurement in measurements:
            modality = CODES[CODE_INDEX[f"measure:{measurement['name']}"]][1]
            if modality in SUMMARIZED_MODALITIES:
                key = (measurement["name"], measurement["day"] // self.summary_block_days)
                blocks.setdefault(key, []).append(measurement)
            else:
                kept.append(measurement)
        for (name, _), members in blocks.items():
            kept.append(
                {
                    "day": max(m["day"] for m in members),
                    "name": name,
                    "value": float(np.mean([m["value"] for m in members])),
                }
            )
        return kept

    def value_bin(self, name: str, value: float) -> int:
        return int(np.searchsorted(self.edges[name], value, side="right")) + 1

    def bin_value(self, name: str, bin_number: int) -> float:
        return float(self.centers[name][bin_number - 1])

    def token_id(self, code_name: str, bin_number: int = 0) -> int:
        first = int(self.code_first_id[CODE_INDEX[code_name]])
        return first + max(bin_number - 1, 0)

    def encode(self, record: ParticipantRecord) -> Tokens:
        """Static tokens on day 0, then measurements and events by day (a fixed order within a day)."""
        rows: list[tuple[int, int, int, float, int]] = []  # (day, order, code, value, bin)
        nan = float("nan")
        if record.sex in ("female", "male"):
            rows.append((0, 0, CODE_INDEX[f"sex:{record.sex}"], nan, 0))
        if record.smoker is not None:
            rows.append((0, 0, CODE_INDEX[f"smoker:{'yes' if record.smoker else 'no'}"], nan, 0))
        for measurement in self.summarize(record.measurements):
            if measurement["day"] > record.last_day:
                continue
            code = CODE_INDEX[f"measure:{measurement['name']}"]
            value = float(measurement["value"])
            rows.append((measurement["day"], 2, code, value, self.value_bin(measurement["name"], value)))
        order = {"intervention": 1, "medication": 1, "diet": 3, "diagnosis": 4, "endpoint": 5}
        for event in record.events:
            code_name = {
                "intervention": f"intervention:{event['name']}",
                "medication": f"medication:{event['name']}",
                "diet": f"diet:{event['name']}",
            }.get(event["kind"], f"{'endpoint' if event['name'] in HARD_ENDPOINTS else 'diagnosis'}:{event['name']}")
            if event["kind"] not in order or code_name not in CODE_INDEX or event["day"] > record.last_day:
                continue  # activity bouts, sleep periods and unknown names are not timeline tokens
            rows.append((event["day"], order[event["kind"]], CODE_INDEX[code_name], nan, 0))
        rows.sort(key=lambda row: (row[0], row[1], row[2], row[4]))
        codes = np.array([row[2] for row in rows], dtype=np.int64)
        bins = np.array([row[4] for row in rows], dtype=np.int64)
        ids = np.array(
            [self.code_first_id[code] + max(b - 1, 0) for code, b in zip(codes, bins, strict=True)], dtype=np.int64
        )
        return Tokens(
            ids,
            codes,
            bins,
            np.array([row[0] for row in rows], dtype=np.int64),
            record.age_years,
            record.last_day,
            np.array([row[3] for row in rows], dtype=np.float64),
            record.height_m,
        )

    def decode(self, tokens: Tokens) -> ParticipantRecord:
        """Back to a record: measurements carry their bin's median value."""
        record = ParticipantRecord(
            age_years=tokens.age_years, sex=None, smoker=None, last_day=tokens.last_day, height_m=tokens.height_m
        )
        for code, bin_number, day in zip(tokens.codes, tokens.bins, tokens.days, strict=True):
            kind, name = CODES[code][0].split(":")
            if kind == "sex":
                record.sex = name
            elif kind == "smoker":
                record.smoker = name == "yes"
            elif kind == "measure":
                record.measurements.append(
                    {"day": int(day), "name": name, "value": self.bin_value(name, int(bin_number))}
                )
            else:
                record.events.append({"day": int(day), "kind": kind, "name": name})
        return record

    def ids_to_tokens(self, ids: np.ndarray, days: np.ndarray, *, age_years: float | None, last_day: int) -> Tokens:
        ids = np.asarray(ids, dtype=np.int64)
        return Tokens(ids, self.id_code[ids], self.id_bin[ids], np.asarray(days, dtype=np.int64), age_years, last_day)

    def latest_values(self, tokens: Tokens) -> np.ndarray:
        """(biomarkers,) each biomarker's latest value in ``tokens`` (its own value where the tokens carry it, else its
        bin's median), NaN if never measured."""
        latest = np.full(len(BIOMARKER_NAMES), np.nan)
        for index, name in enumerate(BIOMARKER_NAMES):
            where = np.flatnonzero(tokens.codes == CODE_INDEX[f"measure:{name}"])
            if len(where):
                last = where[-1]
                own = np.nan if tokens.values is None else tokens.values[last]
                latest[index] = own if np.isfinite(own) else self.bin_value(name, int(tokens.bins[last]))
        return latest

    def measurement_ids(self, name: str) -> np.ndarray:
        """The vocabulary ids of biomarker ``name``'s bins, in bin order."""
        first = int(self.code_first_id[CODE_INDEX[f"measure:{name}"]])
        return np.arange(first, first + self.bins)
