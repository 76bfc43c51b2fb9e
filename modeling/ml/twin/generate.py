"""Sampled futures: K rollouts per participant and arm, batched over a KV cache.

One history is run once (prefill) and its cache is shared by its ``arms x samples`` rows, which attend
to it together (``SharedPrefixCache``: read once per participant, not copied per row); each row keeps
only its own new tokens. An arm with an intervention first appends the intervention token on the
history's last day, the control arm a masked placeholder, so every row keeps the same cache length.
Each step samples the next token and its waiting time (whole days) and stops a row past the horizon
or at death; finished rows leave the batch (its KV cache is compacted when a quarter of its rows have
finished).

**Common random numbers across arms.** Each step draws two uniforms per (participant, sample), shared
by that sample's rows in every arm: one picks the token by inverse CDF (the first token whose
cumulative probability exceeds it), the other the waiting time. Arms of one sample therefore differ
only through the intervention: where the arms' predicted distributions agree they sample the same
future, and the paired difference arm - control carries less sampling noise than independent draws.
The pairing is by step, so it loosens once the arms have sampled a different token (measured in
docs/results/twin-tiny/README.md). The uniforms are drawn for every (participant, sample) at every
step and looked up per row, so rows leaving the batch move no one's random stream: the samples do not
depend on when rows leave.

Two read-outs at every step, so neither depends on which tokens happened to be sampled:
- **expected biomarker values**: the mean of the next-token distribution restricted to a biomarker's
  bins (over the bins' median values) is what a measurement would show if the next event were one,
  without its sampling noise. ``readout="measured"`` (the default) reads a biomarker where the model was
  trained to predict it:
  - **day 0** is the participant's own latest measured value (not a bin's median), the same in every arm;
  - between measurements, the latest value holds: the history's, then each sampled measurement's expectation;
  - **on the horizon day** a visit measures every biomarker (:func:`horizon_visit`): each is read after the
    visit's tokens before it, in the tokenizer's order, as in training. The first (HbA1c) is read after the row's
    last token, which may be days before the horizon: the token head never sees the next token's day. Reading the latest sampled measurement
    instead caught an effect that builds over weeks wherever the last visit happened to fall, and a rollout
    without a visit not at all (docs/results/twin-tiny/diagnosis.md, cause 2).
  ``readout="state"`` records the restricted mean at every step instead, so a grid day reads it where the
  rollout stands. The restricted distribution is only trained where the measurement really follows (a lab
  after the visit's other labs, not after a step count), so ``state`` mostly reads it where it was never
  fitted: on the simulator's trials it found almost no statin effect on LDL (docs/results/twin-tiny/README.md).
  Quantiles over the samples are the fan chart.
- **endpoint risk**: each step's hazard, the probability that the next token is the endpoint and falls inside the
  horizon, summed along the row until the row samples the endpoint, averaged over samples. The sum is the expected
  number of first events, an unbiased estimate of the row's risk under the model with far less noise than
  counting sampled endpoints. A diagnosis of :data:`RISK_FROM_MEASUREMENTS` is read from the measurements that
  would make it (:data:`~modeling.ml.data.clinical.DIAGNOSTIC_CRITERIA`): the next token is "an LDL of at least
  190 mg/dL" with the probability of the LDL bins beyond the limit (:func:`event_weights`). An endpoint of the
  model's hazard head (``config.hazard_endpoints``, ``hazard.py``) adds instead the head's rate per day times the
  days to the row's next sampled token: a rate per day does not depend on how many tokens a day holds.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.cache import KVCache, SharedPrefixCache
from modeling.ml.twin.data import MAX_PINNED_TREATMENTS, STATIC_CODES, pinned_window
from modeling.ml.twin.hazard import add_head_hazard, static_flags
from modeling.ml.twin.model import Heads, HealthFormerModel, hazard_inputs
from modeling.ml.twin.risk import RISK_FROM_MEASUREMENTS, WeightLimits, calibration_factors, event_weights
from modeling.ml.twin.tokens import BIOMARKER_NAMES, Tokenizer, Tokens


@dataclass
class Rollouts:
    grid_days: np.ndarray  # (grid,) days after the start day
    expected: np.ndarray  # (participants, arms, samples, grid, biomarkers) expected value, biomarker units
    risk: np.ndarray  # (participants, arms, samples, endpoints) each row's summed hazards: see endpoint_risk
    sampled_ids: np.ndarray  # (participants, arms, samples, steps) sampled token ids, 0 after a row stopped
    sampled_days: np.ndarray  # (participants, arms, samples, steps)
    arms: list[str | None]
    horizon_days: int
    calibration: np.ndarray | None = (
        None  # (participants, endpoints) factors of the model's risk calibration; None: none
    )

    def endpoint_risk(self, *, calibrated: bool = True) -> np.ndarray:
        """(participants, arms, endpoints) the probability of each endpoint within the horizon: the mean over samples
        of each row's summed hazards, times the model's calibration factor (:func:`calibration_factors`) unless
        ``calibrated`` is False. A row's sum is the expected number of first events given its path, and may exceed 1
        where a path runs past large hazards without sampling the event: only the mean is a probability (capped at 1
        against the rounding of a small sample)."""
        risk: np.ndarray = self.risk.mean(axis=2)
        if calibrated and self.calibration is not None:
            risk = risk * self.calibration[:, None, :]
        capped: np.ndarray = np.minimum(risk, 1.0)
        return capped


def crop_indices(tokens: Tokens, max_tokens: int) -> np.ndarray:
    """Indices of the latest tokens that fit in ``max_tokens``, led by the static tokens and earlier treatments."""
    rest = len(tokens) - int(np.isin(tokens.codes, STATIC_CODES).sum())
    start = max(0, rest - (max_tokens - int(np.isin(tokens.codes, STATIC_CODES).sum()) - MAX_PINNED_TREATMENTS))
    return pinned_window(tokens, start, rest)


def crop_history(tokens: Tokens, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, days) of :func:`crop_indices`."""
    keep = crop_indices(tokens, max_tokens)
    return tokens.ids[keep], tokens.days[keep]


@torch.inference_mode()
def simulate(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    histories: list[Tokens],
    *,
    arms: list[str | None],
    horizon_days: int,
    samples: int,
    seed: int,
    grid_step_days: int = 7,
    max_history_tokens: int = 192,
    max_new_tokens: int = 256,
    batch_rows: int = 2048,
    compact_below: float = 0.75,
    readout: str = "measured",
    risk_from_measurements: Sequence[str] = RISK_FROM_MEASUREMENTS,
    progress: Callable[[float, str], None] = lambda *args: None,
) -> Rollouts:
    """Roll every history forward ``horizon_days`` days from its last day, ``samples`` times per arm.

    ``arms`` are intervention names (started on the history's last day) or None for no intervention.
    The same seed gives the same rollouts (rows are processed in the same chunks). Finished rows leave the
    batch once the share still going falls to ``compact_below`` (0 steps every row to the end); the samples
    are the same either way. ``readout`` is "state" or "measured" (see the module's docstring).
    ``risk_from_measurements``: the diagnoses whose risk is read from their criteria's measurements (:func:`event_weights`).
    ``progress`` hears of each token step of each chunk of participants.
    """
    if readout not in ("state", "measured"):
        raise ValueError(f"readout must be 'state' or 'measured', not {readout!r}")
    device = model.device
    grid = np.arange(0, horizon_days + 1, grid_step_days)
    if grid[-1] != horizon_days:
        grid = np.append(grid, horizon_days)
    participants_per_chunk = max(1, batch_rows // (len(arms) * samples))
    bins = torch.tensor(
        np.stack([tokenizer.measurement_ids(name) for name in BIOMARKER_NAMES]), device=device
    )  # (biomarkers, bins)
    centers = torch.tensor(
        np.stack([tokenizer.centers[name] for name in BIOMARKER_NAMES]), dtype=torch.float32, device=device
    )
    weights = torch.tensor(event_weights(tokenizer, risk_from_measurements), device=device)
    heights = [tokens.height_m for tokens in histories]
    limits = WeightLimits.of(tokenizer, heights, device) if "obesity" in risk_from_measurements else None
    death = tokenizer.token_id("endpoint:death")
    arm_ids = torch.tensor([tokenizer.token_id(f"intervention:{arm}") if arm else 0 for arm in arms], device=device)
    outputs = []

    def chunk_progress(first: int, size: int) -> Callable[[int], None]:
        message = f"sampling the futures of participants {first + 1:,}-{first + size:,} of {len(histories):,}"
        return lambda step: progress((first + size * step / max_new_tokens) / len(histories), message)

    for chunk_index, first in enumerate(range(0, len(histories), participants_per_chunk)):
        chunk = histories[first : first + participants_per_chunk]
        generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + chunk_index)
        latest = torch.tensor(
            np.stack([tokenizer.latest_values(tokens) for tokens in chunk]), dtype=torch.float32, device=device
        )
        outputs.append(
            _simulate_chunk(
                model,
                chunk,
                latest,
                arm_ids,
                samples,
                horizon_days,
                grid,
                max_history_tokens,
                max_new_tokens,
                bins,
                centers,
                weights,
                None if limits is None else limits.rows(torch.arange(first, first + len(chunk), device=device)),
                death,
                generator,
                compact_below,
                readout,
                chunk_progress(first, len(chunk)),
            )
        )
        done = first + len(chunk)
        progress(done / len(histories), f"futures of {done:,} of {len(histories):,} participants sampled")
    expected, risk, ids, days = (np.concatenate([output[i] for output in outputs]) for i in range(4))
    height_known = [height is not None for height in heights] if limits is not None else None
    return Rollouts(
        grid,
        expected,
        risk,
        ids,
        days,
        list(arms),
        horizon_days,
        calibration_factors(model, risk_from_measurements, height_known or [True] * len(histories)),
    )


def inverse_cdf_sample(probabilities: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(rows,) token ids from probabilities (rows, vocab) and one uniform in [0, 1) per row (rows,): the first
    token whose cumulative probability exceeds the uniform; never a token of probability zero."""
    cumulative = probabilities.cumsum(-1)  # (rows, vocab)
    # Scaled by the row's own total, and by one float step less than 1: the target stays below the total whatever the
    # rounding, so a token is always found, and it is one where the cumulative sum rises (a positive probability).
    target = (uniform * (1.0 - 2.0**-23) * cumulative[:, -1]).unsqueeze(-1)  # (rows, 1)
    return torch.searchsorted(cumulative, target, right=True)[:, 0]


@dataclass
class RolloutStart:
    """Every row (participant, arm, sample) on the start day, after its arm's token: what step 0 samples from."""

    cache: SharedPrefixCache  # the participants' histories, shared by their rows, and each row's arm token
    logits: torch.Tensor  # (rows, vocab) the prediction right after the start token
    rate: torch.Tensor  # (rows,)
    hidden: torch.Tensor  # (rows, dim) the normalized state after the start token, which the hazard head reads
    age: torch.Tensor  # (rows,) age at day 0, NaN when unknown
    start_day: torch.Tensor  # (rows,) the history's last day


def start_rollouts(
    model: HealthFormerModel,
    histories: list[Tokens],
    arm_ids: torch.Tensor,
    *,
    samples: int,
    max_history_tokens: int,
    max_new_tokens: int,
) -> RolloutStart:
    """Prefill each history once and give each of its ``arms x samples`` rows its arm's token on the last day: the
    intervention token (``arm_ids`` > 0) or, for a control arm (0), a masked placeholder, so that every row's cache
    has the same length; a control row's prediction is the history's own."""
    device = model.device
    cropped = [crop_history(tokens, max_history_tokens) for tokens in histories]
    count = len(histories)
    ages = torch.tensor(
        [np.nan if tokens.age_years is None else tokens.age_years for tokens in histories],
        dtype=torch.float32,
        device=device,
    )
    start_day = torch.tensor([tokens.last_day for tokens in histories], dtype=torch.long, device=device)
    history, last = _prefill_by_length(model, cropped, ages)
    arms = len(arm_ids)
    cache = SharedPrefixCache(history, arms * samples, capacity=1 + max_new_tokens)  # rows: (participant, arm, sample)
    rows = torch.arange(count, device=device).repeat_interleave(arms * samples)
    row_arm = torch.arange(arms, device=device).repeat_interleave(samples).repeat(count)
    age, start = ages[rows], start_day[rows]
    treated = arm_ids[row_arm] > 0
    step = model.decode_step(cache, arm_ids[row_arm], start, start, age, treated)
    return RolloutStart(
        cache,
        torch.where(treated[:, None], step.logits, last.logits[rows]),
        torch.where(treated, step.rate, last.rate[rows]),
        torch.where(treated[:, None], step.hidden, last.hidden[rows]),
        age,
        start,
    )


def _prefill_by_length(
    model: HealthFormerModel, cropped: list[tuple[np.ndarray, np.ndarray]], ages: torch.Tensor, buckets: int = 4
) -> tuple[KVCache, Heads]:
    """Prefill histories (ids, days) in ``buckets`` batches of similar length, each padded only to its own longest, into
    one left-padded cache: (cache, the heads at each history's last token: logits (histories, vocab), rate
    (histories,), hidden (histories, dim)). Padding every history to the longest of all would spend about a fifth of
    the prefill on padding."""
    device = model.device
    lengths = np.array([len(ids) for ids, _ in cropped])
    length, count = int(lengths.max()), len(cropped)
    cache = KVCache(model.config, count, length, device, model.token_head.weight.dtype)
    cache.length = length
    logits = torch.empty(count, model.config.vocab_size, device=device)
    rate = torch.empty(count, device=device)
    hidden = torch.empty(count, model.config.dim, device=device)
    for members in np.array_split(np.argsort(lengths, kind="stable"), min(buckets, count)):
        width = int(lengths[members].max())
        input_ids = torch.zeros(len(members), width, dtype=torch.long)
        days = torch.zeros(len(members), width, dtype=torch.long)
        valid = torch.zeros(len(members), width, dtype=torch.bool)
        for row, index in enumerate(members):  # left padding: every history ends at the last column
            ids, token_days = cropped[index]
            input_ids[row, width - len(ids) :] = torch.from_numpy(ids)
            days[row, width - len(ids) :] = torch.from_numpy(token_days)
            days[row, : width - len(ids)] = int(token_days[0]) if len(ids) else 0
            valid[row, width - len(ids) :] = True
        rows = torch.from_numpy(members).to(device)
        part, heads = model.prefill(input_ids.to(device), days.to(device), ages[rows], valid.to(device), capacity=width)
        logits[rows], rate[rows], hidden[rows] = heads
        for layer in range(len(cache.keys)):
            cache.keys[layer][rows, :, length - width :] = part.keys[layer]
            cache.values[layer][rows, :, length - width :] = part.values[layer]
        cache.valid[rows, length - width :] = part.valid
        cache.carried.assign(rows, part.carried)
    return cache, Heads(logits, rate, hidden)


def _simulate_chunk(
    model: HealthFormerModel,
    histories: list[Tokens],
    latest: torch.Tensor,
    arm_ids: torch.Tensor,
    samples: int,
    horizon_days: int,
    grid: np.ndarray,
    max_history_tokens: int,
    max_new_tokens: int,
    bins: torch.Tensor,
    centers: torch.Tensor,
    weights: torch.Tensor,
    limits: WeightLimits | None,  # one row per history
    death: int,
    generator: torch.Generator,
    compact_below: float,
    readout: str,
    tick: Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    device = model.device
    count, arms = len(histories), len(arm_ids)
    biomarkers = bins.shape[0]
    # a visit on the horizon day reads every biomarker (horizon_visit); a horizon of 0 days is day 0 itself
    visit = readout == "measured" and horizon_days > 0
    begun = start_rollouts(
        model,
        histories,
        arm_ids,
        samples=samples,
        max_history_tokens=max_history_tokens,
        max_new_tokens=max_new_tokens + (biomarkers if visit else 0),
    )
    cache, logits, rate, hidden = begun.cache, begun.logits, begun.rate, begun.hidden
    age, start = begun.age, begun.start_day
    # Each row's static tokens (sex, smoking), which the hazard head reads: one row per (participant, arm, sample).
    static = torch.tensor(np.stack([static_flags(tokens) for tokens in histories]), device=device)
    static = static.repeat_interleave(arms * samples, dim=0)
    # The hazard head's endpoints (``hazard_columns`` in ``ENDPOINTS``) add its per-day rate times the days until the
    # next token; every other endpoint adds the next token's probability of being its first event (``weights``).
    token_read = torch.ones(weights.shape[1], device=device)
    hazard_columns = torch.tensor(
        [ENDPOINTS.index(endpoint) for endpoint in model.config.hazard_endpoints], dtype=torch.long, device=device
    )
    token_read[hazard_columns] = 0.0
    total = count * arms * samples
    if limits is not None:  # one row per (participant, arm, sample), read through ``members``
        limits = limits.rows(torch.arange(count, device=device).repeat_interleave(arms * samples))
    grid_days = torch.tensor(grid, device=device)
    # Outputs of every row; a row's are written when it leaves the batch (finished) or at the end.
    expected_out = torch.empty(total, len(grid), biomarkers, device=device)
    risk_out = torch.empty(total, weights.shape[1], device=device)
    ids_out = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)
    days_out = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)
    # The batch: ``members`` (batch,) are the rows still in the cache; all state below is per member.
    members = torch.arange(total, device=device)
    expected = torch.full((total, len(grid), biomarkers), float("nan"), device=device)
    measured_grid = torch.full_like(expected, float("nan"))
    # The latest measurement: the history's own value, then each sampled measurement's expectation (NaN: none yet).
    measured = latest.repeat_interleave(arms * samples, dim=0)
    measured_grid[:, 0] = measured
    later = (grid_days > 0)[None, :, None]
    bin_biomarker = torch.full((int(bins.max()) + 1,), -1, dtype=torch.long, device=device)
    bin_biomarker[bins.reshape(-1)] = torch.arange(biomarkers, device=device).repeat_interleave(bins.shape[1])
    risk = torch.zeros(total, weights.shape[1], device=device)  # the hazards summed while no event was sampled
    alive = torch.ones_like(risk)  # 1 until the row samples the event (a share of it for a bin across the limit)
    prior = loss_weight_prior(model)
    last_logits = logits  # after each row's last real token: a finished row's own logits are overwritten after it
    dead = torch.zeros(total, dtype=torch.bool, device=device)
    current = start.clone()
    active = torch.ones(total, dtype=torch.bool, device=device)
    sampled_ids = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)
    sampled_days = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)
    # Each row's random stream: its (participant, sample), the same in every arm.
    stream = torch.arange(count, device=device).repeat_interleave(arms * samples) * samples + torch.arange(
        samples, device=device
    ).repeat(count * arms)

    # (rows, biomarkers): the mean value a measurement would show
    def expectation(probabilities: torch.Tensor) -> torch.Tensor:
        restricted = probabilities[:, bins]  # (rows, biomarkers, bins)
        return (restricted / restricted.sum(-1, keepdim=True).clamp(min=1e-12) * centers).sum(-1)

    # grid days in [since, until) take ``values`` and the measured state
    def fill(rows_mask: torch.Tensor, values: torch.Tensor, since: torch.Tensor, until: torch.Tensor) -> None:
        offset = grid_days[None, :] + start[:, None]
        where = (rows_mask[:, None] & (offset >= since[:, None]) & (offset < until[:, None]))[
            :, :, None
        ]  # (batch, grid, 1)
        expected.copy_(torch.where(where, values[:, None, :], expected))
        # grid day 0 is the history's own latest value, whatever is sampled later that day
        measured_grid.copy_(torch.where(where & later, measured[:, None, :], measured_grid))

    def flush(rows: torch.Tensor) -> None:  # write the outputs of the members at positions ``rows``
        if visit:
            seen = rows[~dead[rows]]
            if len(seen):
                values = horizon_visit(
                    model,
                    cache.select(seen),
                    last_logits[seen],
                    current[seen],
                    start[seen] + horizon_days,
                    age[seen],
                    bins,
                    centers,
                )
                expected[seen, -1], measured_grid[seen, -1] = values, values
        originals = members[rows]
        expected_out[originals] = (
            expected[rows]
            if readout == "state"
            else torch.where(torch.isnan(measured_grid[rows]), expected[rows], measured_grid[rows])
        )
        risk_out[originals] = risk[rows]
        ids_out[originals], days_out[originals] = sampled_ids[rows], sampled_days[rows]

    def head_hazard() -> torch.Tensor | None:  # (batch, hazard endpoints) at each member's latest token
        if model.hazard_head is None:
            return None
        carried = cache.carried
        return model.hazard(
            hidden, hazard_inputs(carried.latest_value, carried.latest_day, current, age, static[members])
        )

    for step in range(max_new_tokens):
        tick(step)
        hazard = head_hazard()
        probabilities = torch.softmax(logits.float() - prior, dim=-1)
        values = expectation(probabilities)
        remaining = (start + horizon_days - current).float()
        inside = 1.0 - torch.exp(-rate * (remaining + 1.0))  # P(the next token comes within the horizon)
        hazards = probabilities @ weights
        if limits is not None:
            hazards = limits.hazards(probabilities, hazards, members)
        risk = torch.where(active[:, None], risk + alive * hazards * inside[:, None] * token_read, risk)
        # Two uniforms per (participant, sample), drawn whoever is still in the batch, shared across arms.
        uniforms = torch.rand(count * samples, 2, generator=generator, device=device)[stream]  # (batch, 2)
        token = inverse_cdf_sample(probabilities, uniforms[:, 0])
        gap = (
            torch.floor(-torch.log(uniforms[:, 1].clamp(min=1e-12)) / rate).clamp(max=10 * max(horizon_days, 1)).long()
        )
        next_day = current + gap
        if hazard is not None:  # the head's rates hold from this token's day to the next's (or the horizon)
            exposure = (torch.clamp(next_day, max=start + horizon_days) - current).clamp(min=0).float()
            risk = add_head_hazard(risk, alive, hazard, exposure, hazard_columns, active)
        fill(active, values, current, torch.where(next_day > start + horizon_days, start + horizon_days + 1, next_day))
        continuing = active & (next_day <= start + horizon_days)
        sampled_ids[:, step] = torch.where(continuing, token, 0)
        events = weights[token] if limits is None else limits.events(token, weights[token], members)
        alive = torch.where(continuing[:, None], alive * (1.0 - events), alive)
        sampled_days[:, step] = torch.where(continuing, next_day, 0)
        previous = current
        current = torch.where(continuing, next_day, current)
        biomarker = torch.where(
            continuing & (token < len(bin_biomarker)), bin_biomarker[token.clamp(max=len(bin_biomarker) - 1)], -1
        )
        sampled_measurement = biomarker >= 0
        # Without a host sync: rows that measured nothing write their own value back.
        column = biomarker.clamp(min=0)[:, None]
        update = torch.where(sampled_measurement[:, None], values.gather(1, column), measured.gather(1, column))
        measured.scatter_(1, column, update)
        died = continuing & (token == death)
        fill(died, values, current, start + horizon_days + 1)  # after death the last state holds: nothing more happens
        dead = dead | died
        active = continuing & ~died
        still = int(continuing.sum())  # the one host sync per step
        if still == 0:
            break
        if still <= compact_below * len(members):  # drop finished rows: compact the batch and its KV cache
            kept = torch.nonzero(continuing)[:, 0]
            flush(torch.nonzero(~continuing)[:, 0])
            members, cache, stream = members[kept], cache.select(kept), stream[kept]
            (
                last_logits,
                dead,
                expected,
                measured_grid,
                measured,
                risk,
                alive,
                current,
                previous,
                active,
                continuing,
                sampled_ids,
                sampled_days,
                token,
                start,
                age,
            ) = (
                tensor.index_select(0, kept)
                for tensor in (
                    last_logits,
                    dead,
                    expected,
                    measured_grid,
                    measured,
                    risk,
                    alive,
                    current,
                    previous,
                    active,
                    continuing,
                    sampled_ids,
                    sampled_days,
                    token,
                    start,
                    age,
                )
            )
        logits, rate, hidden = model.decode_step(
            cache, torch.where(continuing, token, 0), current, previous, age, continuing
        )
        last_logits = torch.where(continuing[:, None], logits, last_logits)
    else:  # out of tokens: the last state holds until the horizon
        values = expectation(torch.softmax(logits.float() - prior, dim=-1))
        fill(active, values, current, start + horizon_days + 1)
        hazard = head_hazard()
        if hazard is not None:
            exposure = (start + horizon_days - current).clamp(min=0).float()
            risk = add_head_hazard(risk, alive, hazard, exposure, hazard_columns, active)
    flush(torch.arange(len(members), device=device))
    shape = (count, arms, samples)
    return (
        expected_out.reshape(*shape, len(grid), -1).cpu().numpy(),
        risk_out.reshape(*shape, -1).cpu().numpy(),
        ids_out.reshape(*shape, -1).cpu().numpy(),
        days_out.reshape(*shape, -1).cpu().numpy(),
    )


def loss_weight_prior(model: HealthFormerModel) -> torch.Tensor:
    """(vocab,) the log of each token's weight in the training loss, to subtract from the logits (+inf: weight 0).

    Training weights each target token's cross-entropy by its modality (endpoints 3, diagnoses 2, labs 1, wearable
    summaries 0.5, diet 0.3...), and the minimizer of a weighted cross-entropy is the data's next-token distribution
    times the weights, renormalized: left as they are, endpoints are sampled about three times as often as they
    happen and every risk is inflated by as much (predicted incidence 1.5-9x the observed one,
    docs/results/twin-tiny/README.md). Dividing by the weights (subtracting their log) gives back the data's
    distribution; tokens never trained as targets (weight 0: the static tokens, padding) are never sampled. Reading one
    biomarker's bins is unchanged: they share one weight."""
    weight = model.id_loss_weight.float()
    return torch.where(weight > 0, torch.log(weight.clamp(min=1e-12)), float("inf"))


@torch.no_grad()
def horizon_visit(
    model: HealthFormerModel,
    cache: SharedPrefixCache,
    logits: torch.Tensor,
    current: torch.Tensor,
    day: torch.Tensor,
    age: torch.Tensor,
    bins: torch.Tensor,
    centers: torch.Tensor,
) -> torch.Tensor:
    """(rows, biomarkers): what a visit on ``day`` measuring every biomarker would show, each read where the model
    was trained to predict it: the tokens of one day come in the tokenizer's order, so biomarker k is read after
    the visit's biomarkers before k, each given as the bin nearest its expected value (the same in every arm of
    a sample: common random numbers hold). ``logits`` (rows, vocab) follow each row's last token, on ``current``:
    the first biomarker is read from them, at that token's state, not the horizon's.
    Consumes ``cache`` (decode steps are appended to it)."""
    values = torch.empty(len(current), bins.shape[0], device=current.device)
    previous = current
    for index in range(bins.shape[0]):
        restricted = torch.softmax(logits.float(), dim=-1)[:, bins[index]]  # (rows, bins)
        restricted = restricted / restricted.sum(-1, keepdim=True).clamp(min=1e-12)
        values[:, index] = (restricted * centers[index]).sum(-1)
        nearest = (values[:, index, None] - centers[index]).abs().argmin(-1)
        valid = torch.ones(len(current), dtype=torch.bool, device=current.device)
        logits = model.decode_step(cache, bins[index][nearest], day, previous, age, valid).logits
        previous = day
    return values


def effect_summary(
    rollouts: Rollouts, *, participant: int, arm: int, control: int = 0, interval: float = 0.9
) -> dict[str, dict[str, float]]:
    """Per biomarker, the predicted change at the horizon (arm minus control, paired by sample): mean and interval."""
    difference = (
        rollouts.expected[participant, arm, :, -1, :] - rollouts.expected[participant, control, :, -1, :]
    )  # (samples, biomarkers)
    low, high = np.quantile(difference, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
    return {
        name: {"mean": float(difference[:, index].mean()), "low": float(low[index]), "high": float(high[index])}
        for index, name in enumerate(BIOMARKER_NAMES)
    }


def bands(
    rollouts: Rollouts,
    *,
    participant: int,
    arm: int,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> dict[str, dict[str, list[float]]]:
    """Per biomarker, quantiles over the samples at every grid day: the fan chart of one arm."""
    values = rollouts.expected[participant, arm]  # (samples, grid, biomarkers)
    levels = np.quantile(values, quantiles, axis=0)  # (quantiles, grid, biomarkers)
    return {
        name: {str(q): levels[i, :, index].round(3).tolist() for i, q in enumerate(quantiles)}
        for index, name in enumerate(BIOMARKER_NAMES)
    }
