"""The hazard head: each endpoint's first event as a per-day rate, read from the twin's frozen trunk.

Summed token by token, a risk needs each next-token probability to shrink exactly as the tokens per day grow; the
twin's shrinks more than that, so it under-predicts the densely measured (docs/results/twin-tiny/README.md, session
38). The head reads the rate per day instead. It is fitted after training, on participants of a seed of its own, by
Poisson regression on the trunk's normalized state and the position's own inputs (each biomarker's latest value and
how old it is, the participant's age, sex and smoking: ``model.hazard_inputs``) at each day's last token: the exposure
is the days until the next token, the event that the next day with tokens holds the endpoint's first event. A rollout
(``generate._simulate_chunk``) then adds the head's rate times the days to its next sampled token, for every endpoint
the head holds; the others keep the next-token read-out. The trunk is left as it was, so every biomarker trajectory,
and so every trial, is the same with or without the head."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.cache import Carried
from modeling.ml.twin.data import simulated_records, window_indices
from modeling.ml.twin.model import HAZARD_STATIC_CODES, HealthFormerModel, hazard_inputs, latest_state
from modeling.ml.twin.risk import RISK_FROM_MEASUREMENTS, endpoint_token
from modeling.ml.twin.tokens import CODE_INDEX, HARD_ENDPOINTS, ParticipantRecord, Tokenizer, Tokens

# The endpoints whose event is recorded when it happens; a diagnosis made at a visit (hypertension, diabetes...) has
# its day set by the visits, which the sampled futures schedule and a rate per day does not.
HAZARD_ENDPOINTS = (*HARD_ENDPOINTS, "atrial_fibrillation")
# The penalty on each endpoint's deviation from the weights the endpoints share (fit_hazard_head): chosen by 3-fold
# cross-validation by person on the head's own fitting cohort (checks/hazard_pooling.py, session 41). At this size
# (the likelihood is a mean over millions of rows) the deviations all but vanish: one ranking shared by every
# endpoint, each with its own level; 1e-1 fitted the same, and weaker pooling let the deviations cost likelihood.
POOLING = 1e-2


def add_head_hazard(
    risk: torch.Tensor,
    alive: torch.Tensor,
    hazard: torch.Tensor,
    exposure: torch.Tensor,
    columns: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """``risk`` (rows, endpoints) plus, in the hazard head's ``columns``, its per-day rates (rows, len(columns)) times
    ``exposure`` (rows,) days, for the ``active`` rows still free of each endpoint's event (``alive``)."""
    added = torch.zeros_like(risk)
    added[:, columns] = hazard * exposure[:, None]
    return torch.where(active[:, None], risk + alive * added, risk)


def static_flags(tokens: Tokens) -> np.ndarray:
    """(4,) bool: which of ``HAZARD_STATIC_CODES`` (sex, smoking) the tokens hold, as the hazard head reads them."""
    return np.array([CODE_INDEX[code] in tokens.codes for code in HAZARD_STATIC_CODES])


@dataclass
class HazardRows:
    """One row per day's last token: the trunk's hidden state there, the days until the next token (the exposure),
    and per endpoint whether the participant is still free of it (at risk) and whether that next day holds it."""

    features: torch.Tensor  # (rows, dim + inputs) float32: the normalized state and the position's own inputs
    exposure: torch.Tensor  # (rows,) days
    at_risk: torch.Tensor  # (rows, endpoints) bool
    events: torch.Tensor  # (rows, endpoints) bool
    person: np.ndarray  # (rows,) the record's index


def day_boundaries(
    tokens: Tokens, keep: np.ndarray, own_from: int, first_window: bool, last_window: bool, last_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions in the window, exposure days, the next day with tokens; inf for the record's end) of a window's
    day boundaries: each of its own tokens followed by a later day. A first window starts at the last static token;
    a later one at its first own token: its pinned tokens are days old. The days between one window's last token and
    the next window's first are not a row of either (one interval per window, exposure and event dropped together).
    The last window adds its last token up to the record's last day, when that is later (nothing happened since)."""
    days = tokens.days[keep]
    positions = np.arange(max(own_from - 1, 0) if first_window else own_from, len(keep) - 1)
    positions = positions[days[positions + 1] > days[positions]]
    next_day = days[positions + 1].astype(float)
    if last_window and len(keep) and last_day > days[-1]:
        positions = np.append(positions, len(keep) - 1)
        next_day = np.append(next_day, np.inf)
    exposure = np.minimum(next_day, last_day) - days[positions]
    return positions, exposure, next_day


@torch.no_grad()
def hazard_rows(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    records: list[ParticipantRecord],
    endpoints: tuple[str, ...],
    *,
    batch_size: int = 64,
    progress: Callable[[float, str], None] = lambda *args: None,
) -> HazardRows:
    """The rows of :class:`HazardRows` of every record, windowed as training windows them (``progress`` hears of each
    batch of windows read)."""
    device = model.device
    event_ids = np.array([endpoint_token(tokenizer, endpoint) for endpoint in endpoints])
    features, exposures, at_risk, events, people = [], [], [], [], []
    pending: list[tuple[np.ndarray, np.ndarray, float | None, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        width = max(len(ids) for ids, *_ in pending)
        ids = torch.zeros(len(pending), width, dtype=torch.long)
        days = torch.zeros(len(pending), width, dtype=torch.long)
        valid = torch.zeros(len(pending), width, dtype=torch.bool)
        age = torch.full((len(pending),), float("nan"))
        for row, (row_ids, row_days, row_age, *_) in enumerate(pending):
            ids[row, : len(row_ids)], days[row, : len(row_ids)] = torch.from_numpy(row_ids), torch.from_numpy(row_days)
            days[row, len(row_ids) :], valid[row, : len(row_ids)] = int(row_days[-1]), True
            age[row] = float("nan") if row_age is None else row_age
        ids, days, age, valid = ids.to(device), days.to(device), age.to(device), valid.to(device)
        hidden = model.norm(model.hidden_states(ids, days, age, valid))
        nothing = Carried.empty(model.config, len(pending), device)
        values, value_days = latest_state(
            model.id_biomarker[ids], model.id_value[ids], days, nothing.latest_value, nothing.latest_day
        )
        flags = torch.from_numpy(np.stack([flags for *_, flags in pending])).to(device)
        static = flags[:, None, :].expand(-1, ids.shape[1], -1)
        inputs = hazard_inputs(values, value_days, days, age[:, None].expand_as(days), static)
        state = torch.cat([hidden, inputs], dim=-1)
        for row, (*_, positions, _) in enumerate(pending):
            features.append(state[row, torch.from_numpy(positions).to(device)].float().cpu())
        pending.clear()

    for person, record in enumerate(records):
        tokens = tokenizer.encode(record)
        first = np.array(
            [tokens.days[tokens.ids == token].min() if (tokens.ids == token).any() else np.inf for token in event_ids]
        )
        windows = window_indices(tokens, model.config.block_size)
        for number, (keep, own_from) in enumerate(windows):
            positions, exposure, next_day = day_boundaries(
                tokens, keep, own_from, number == 0, number == len(windows) - 1, record.last_day
            )
            if not len(positions):
                continue
            here = tokens.days[keep][positions].astype(float)
            exposures.append(exposure)
            at_risk.append(here[:, None] < first[None, :])
            events.append((next_day[:, None] == first[None, :]) & np.isfinite(next_day)[:, None])
            people.append(np.full(len(positions), person))
            pending.append((tokens.ids[keep], tokens.days[keep], tokens.age_years, positions, static_flags(tokens)))
            if len(pending) == batch_size:
                flush()
                progress(person / len(records), f"read {person:,} of {len(records):,} participants' histories")
    if pending:
        flush()
    return HazardRows(
        torch.cat(features),
        torch.from_numpy(np.concatenate(exposures)).float(),
        torch.from_numpy(np.concatenate(at_risk)),
        torch.from_numpy(np.concatenate(events)),
        np.concatenate(people),
    )


def fit_hazard_head(
    rows: HazardRows,
    *,
    penalty: float,
    pooling: float | None = None,
    max_iterations: int = 200,
    progress: Callable[[float, str], None] = lambda *args: None,
) -> torch.nn.Linear:
    """A linear head of log rates per day, by Poisson regression of each endpoint's events on the exposure of the rows
    at risk of it (the negative log likelihood per row at risk, plus the penalty), fitted by L-BFGS from each
    endpoint's crude rate on standardized features; the returned head reads them as they are.

    Without ``pooling`` each endpoint's weights are its own, ``penalty`` times their squares. With it, an endpoint's
    weights are a vector shared by every endpoint plus the endpoint's own deviation from it, ``penalty`` times the
    shared's squares and ``pooling`` (> 0) times the deviations': a multi-task ridge, in which an endpoint of few
    events leans on what all the endpoints' events fit; the larger ``pooling``, the less its own events may pull it
    away (:data:`POOLING` leaves next to nothing of the deviations). ``progress`` hears of each evaluation of the
    likelihood, as a share of the most L-BFGS makes."""
    if pooling is not None and pooling <= 0:
        raise ValueError("pooling must be above 0: an unpenalized deviation is each endpoint fitted alone, unpenalized")
    torch.manual_seed(0)
    mean, scale = rows.features.mean(0), rows.features.std(0).clamp(min=1e-3)
    features = (rows.features - mean) / scale
    head = torch.nn.Linear(rows.features.shape[1], rows.at_risk.shape[1])
    shared = torch.zeros(rows.features.shape[1], requires_grad=pooling is not None)
    at_risk, events = rows.at_risk.float(), rows.events.float()
    crude = (events * at_risk).sum(0) / (rows.exposure[:, None] * at_risk).sum(0).clamp(min=1.0)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.log(crude.clamp(min=1e-9)))
    limit = max_iterations * 5 // 4  # evaluations of the likelihood (L-BFGS's default)
    optimizer = torch.optim.LBFGS(
        [*head.parameters(), *([shared] if pooling is not None else [])],
        lr=1,
        max_iter=max_iterations,
        max_eval=limit,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    per_endpoint = at_risk.sum(0).clamp(min=1.0)
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        progress(min(evaluations / limit, 1.0), f"fitting the head: evaluation {evaluations}")
        optimizer.zero_grad()
        log_rate = features @ (head.weight + shared).T + head.bias
        likelihood = (torch.exp(log_rate) * rows.exposure[:, None] - events * log_rate) * at_risk
        own = (head.weight**2).sum()
        loss: torch.Tensor = (likelihood.sum(0) / per_endpoint).sum() + (
            penalty * own if pooling is None else penalty * (shared**2).sum() + pooling * own
        )
        loss.backward()  # type: ignore[no-untyped-call]  # torch's backward is unannotated
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # LBFGS.step is unannotated
    with torch.no_grad():  # fold the shared weights and the standardization in
        head.weight.add_(shared).div_(scale)
        head.bias.sub_(head.weight @ mean)
    return head


def add_hazard_head(
    model_dir: Path,
    *,
    participants: int,
    seed: int,
    penalty: float = 1e-5,
    pooling: float | None = POOLING,
    endpoints: tuple[str, ...] = HAZARD_ENDPOINTS,
    days: int = 730,
    device: str = "cpu",
    progress: Callable[[float, str], None] = lambda *args: None,
) -> dict[str, Any]:
    """Fit the hazard head of the twin in ``model_dir`` on ``participants`` new simulated people of ``seed`` (never a
    seed it trained on), as training simulates them, and save it into the model: the weights, ``hazard_endpoints``
    and ``hazard_fit``. The risk calibration is dropped (and its calibration.json): it was fitted on risks read the
    other way. ``progress``: a third simulating them, a half reading their histories, the rest the fit."""
    from modeling.ml.twin.training import load_twin, training_seeds

    unknown = [endpoint for endpoint in endpoints if endpoint not in ENDPOINTS]
    if unknown:
        raise ValueError(f"not endpoints: {', '.join(unknown)}")
    measured = [endpoint for endpoint in endpoints if endpoint in RISK_FROM_MEASUREMENTS]
    if measured:  # a rollout stops adding an endpoint's rate when it samples the event, which for these is no token
        raise ValueError(f"read from the measurements that make them, not from a token: {', '.join(measured)}")
    if seed in training_seeds(model_dir, head=False):  # the head's own seed may fit the head it replaces again
        raise ValueError(f"seed {seed} is a seed the model trained on: fit the head on participants it never saw")
    started = time.time()
    model, tokenizer = load_twin(model_dir, device)
    simulated = simulated_records(
        participants=participants,
        days=days,
        seed=seed,
        unknown_smoking_probability=0.25,
        progress=lambda fraction, message: progress(fraction / 3, message),
    )
    rows = hazard_rows(
        model,
        tokenizer,
        simulated.records,
        endpoints,
        progress=lambda fraction, message: progress(1 / 3 + fraction / 2, message),
    )
    head = fit_hazard_head(
        rows,
        penalty=penalty,
        pooling=pooling,
        progress=lambda fraction, message: progress(5 / 6 + fraction / 6, message),
    )
    model.config.hazard_endpoints = list(endpoints)
    model.config.hazard_fit = {
        "seed": seed,
        "participants": participants,
        "days": days,
        "penalty": penalty,
        "pooling": pooling,
        "rows": len(rows.exposure),
        "events": {
            endpoint: int(count) for endpoint, count in zip(endpoints, rows.events.sum(0).tolist(), strict=True)
        },
        "exposure_years": round(float(rows.exposure.sum()) / 365.25, 1),
    }
    model.config.risk_calibration, model.config.risk_calibration_fit = {}, {}
    model.config.risk_calibration_without_height = {}
    model.hazard_head = head.to(model.device)
    model.save_pretrained(model_dir)
    (Path(model_dir) / "calibration.json").unlink(missing_ok=True)
    progress(1.0, "hazard head fitted")
    return {**model.config.hazard_fit, "seconds": round(time.time() - started)}


def hazard_sentence(model: HealthFormerModel) -> str:
    """What the risk table reads from the hazard head, from the model's config (empty without one)."""
    fit = model.config.hazard_fit
    if not model.config.hazard_endpoints:
        return ""
    pooled = (
        "" if fit.get("pooling") is None else f", the endpoints' weights pooled (deviation penalty {fit['pooling']:g})"
    )
    return (
        f" {', '.join(model.config.hazard_endpoints).replace('_', ' ')}: the hazard head's rate per day times the days to "
        f"each next sampled token (`twin hazard`, fitted on {fit['participants']} other new participants, seed "
        f"{fit['seed']}, on the frozen trunk{pooled}); every other endpoint: the next tokens' probabilities summed."
    )
