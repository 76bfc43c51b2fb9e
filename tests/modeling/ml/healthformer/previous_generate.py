"""The rollout as it was before rows were dropped from the batch (commit 1a73b86), kept verbatim as the reference
that the optimized ``generate.simulate`` must reproduce sample for sample, and as the "before" of the benchmark."""

import numpy as np
import torch

from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.healthformer.generate import Rollouts, crop_history, endpoint_token
from modeling.ml.healthformer.model import HealthFormerModel
from modeling.ml.healthformer.tokens import BIOMARKER_NAMES, Tokenizer, Tokens


@torch.no_grad()
def simulate(model: HealthFormerModel, tokenizer: Tokenizer, histories: list[Tokens], *, arms: list[str | None], horizon_days: int,
             samples: int, seed: int, grid_step_days: int = 7, max_history_tokens: int = 192, max_new_tokens: int = 256,
             batch_rows: int = 2048) -> Rollouts:
    """Roll every history forward ``horizon_days`` days from its last day, ``samples`` times per arm.

    ``arms`` are intervention names (started on the history's last day) or None for no intervention.
    The same seed gives the same rollouts (rows are processed in the same chunks).
    """
    device = model.device
    grid = np.arange(0, horizon_days + 1, grid_step_days)
    if grid[-1] != horizon_days:
        grid = np.append(grid, horizon_days)
    participants_per_chunk = max(1, batch_rows // (len(arms) * samples))
    bins = torch.tensor(np.stack([tokenizer.measurement_ids(name) for name in BIOMARKER_NAMES]), device=device)  # (biomarkers, bins)
    centers = torch.tensor(np.stack([tokenizer.centers[name] for name in BIOMARKER_NAMES]), dtype=torch.float32, device=device)
    endpoints = torch.tensor([endpoint_token(tokenizer, name) for name in ENDPOINTS], device=device)
    death = tokenizer.token_id("endpoint:death")
    arm_ids = torch.tensor([tokenizer.token_id(f"intervention:{arm}") if arm else 0 for arm in arms], device=device)
    outputs = []
    for chunk_index, first in enumerate(range(0, len(histories), participants_per_chunk)):
        chunk = histories[first:first + participants_per_chunk]
        generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + chunk_index)
        outputs.append(_simulate_chunk(model, chunk, arm_ids, samples, horizon_days, grid, max_history_tokens, max_new_tokens,
                                       bins, centers, endpoints, death, generator))
    expected, risk, ids, days = (np.concatenate([output[i] for output in outputs]) for i in range(4))
    return Rollouts(grid, expected, risk, ids, days, list(arms), horizon_days)


def _simulate_chunk(model, histories, arm_ids, samples, horizon_days, grid, max_history_tokens, max_new_tokens, bins, centers, endpoints,
                    death, generator):
    device = model.device
    cropped = [crop_history(tokens, max_history_tokens) for tokens in histories]
    length = max(len(ids) for ids, _ in cropped)
    count = len(histories)
    input_ids = torch.zeros(count, length, dtype=torch.long)
    days = torch.zeros(count, length, dtype=torch.long)
    valid = torch.zeros(count, length, dtype=torch.bool)
    for row, (ids, token_days) in enumerate(cropped):  # left padding: every history ends at the last column
        input_ids[row, length - len(ids):] = torch.from_numpy(ids)
        days[row, length - len(ids):] = torch.from_numpy(token_days)
        days[row, :length - len(ids)] = int(token_days[0]) if len(ids) else 0
        valid[row, length - len(ids):] = True
    ages = torch.tensor([np.nan if tokens.age_years is None else tokens.age_years for tokens in histories], dtype=torch.float32)
    start_day = torch.tensor([tokens.last_day for tokens in histories], dtype=torch.long)
    cache, logits, rate = model.prefill(input_ids.to(device), days.to(device), ages.to(device), valid.to(device),
                                        capacity=length + 1 + max_new_tokens)

    arms = len(arm_ids)
    rows = torch.arange(count, device=device).repeat_interleave(arms * samples)  # row = (participant, arm, sample)
    row_arm = torch.arange(arms, device=device).repeat_interleave(samples).repeat(count)
    cache = cache.select(rows)
    age, start = ages.to(device)[rows], start_day.to(device)[rows]
    # The arm's intervention token on the start day (a masked placeholder for the control arm).
    treated = arm_ids[row_arm] > 0
    step_logits, step_rate = model.decode_step(cache, arm_ids[row_arm], start, start, age, treated)
    logits = torch.where(treated[:, None], step_logits, logits[rows])
    rate = torch.where(treated, step_rate, rate[rows])

    total = len(rows)
    grid_days = torch.tensor(grid, device=device)
    expected = torch.full((total, len(grid), bins.shape[0]), float("nan"), device=device)
    measured_grid = torch.full_like(expected, float("nan"))
    measured = torch.full((total, bins.shape[0]), float("nan"), device=device)  # the latest sampled measurement's expectation
    bin_biomarker = torch.full((int(bins.max()) + 1,), -1, dtype=torch.long, device=device)
    bin_biomarker[bins.reshape(-1)] = torch.arange(bins.shape[0], device=device).repeat_interleave(bins.shape[1])
    survival = torch.ones(total, len(endpoints), device=device)
    current = start.clone()
    active = torch.ones(total, dtype=torch.bool, device=device)
    sampled_ids = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)
    sampled_days = torch.zeros(total, max_new_tokens, dtype=torch.long, device=device)

    def expectation(probabilities):  # (rows, biomarkers): the mean value a measurement would show
        restricted = probabilities[:, bins]  # (rows, biomarkers, bins)
        return (restricted / restricted.sum(-1, keepdim=True).clamp(min=1e-12) * centers).sum(-1)

    def fill(rows_mask, values, since, until):  # grid days in [since, until) take ``values`` and the measured state
        offset = (grid_days[None, :] + start[:, None])
        where = rows_mask[:, None] & (offset >= since[:, None]) & (offset < until[:, None])
        expected[where] = values[:, None, :].expand(-1, len(grid), -1)[where]
        measured_grid[where] = measured[:, None, :].expand(-1, len(grid), -1)[where]

    for step in range(max_new_tokens):
        probabilities = torch.softmax(logits.float(), dim=-1)
        values = expectation(probabilities)
        remaining = (start + horizon_days - current).float()
        inside = 1.0 - torch.exp(-rate * (remaining + 1.0))  # P(the next token comes within the horizon)
        survival = torch.where(active[:, None], survival * (1.0 - probabilities[:, endpoints] * inside[:, None]), survival)
        token = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        uniform = torch.rand(total, generator=generator, device=device).clamp(min=1e-12)
        gap = torch.floor(-torch.log(uniform) / rate).clamp(max=10 * horizon_days).long()
        next_day = current + gap
        fill(active, values, current, torch.where(next_day > start + horizon_days, start + horizon_days + 1, next_day))
        continuing = active & (next_day <= start + horizon_days)
        sampled_ids[:, step] = torch.where(continuing, token, 0)
        sampled_days[:, step] = torch.where(continuing, next_day, 0)
        previous = current
        current = torch.where(continuing, next_day, current)
        biomarker = torch.where(continuing & (token < len(bin_biomarker)), bin_biomarker[token.clamp(max=len(bin_biomarker) - 1)], -1)
        sampled_measurement = biomarker >= 0
        if sampled_measurement.any():
            rows_measured = torch.nonzero(sampled_measurement)[:, 0]
            measured[rows_measured, biomarker[rows_measured]] = values[rows_measured, biomarker[rows_measured]]
        died = continuing & (token == death)
        fill(died, values, current, start + horizon_days + 1)  # after death the last state holds: nothing more happens
        active = continuing & ~died
        if not continuing.any():
            break
        logits, rate = model.decode_step(cache, torch.where(continuing, token, 0), current, previous, age, continuing)
    else:  # out of tokens: the last state holds until the horizon
        values = expectation(torch.softmax(logits.float(), dim=-1))
        fill(active, values, current, start + horizon_days + 1)
    expected = torch.where(torch.isnan(measured_grid), expected, measured_grid)
    shape = (count, arms, samples)
    return (expected.reshape(*shape, len(grid), -1).cpu().numpy(), (1.0 - survival).reshape(*shape, -1).cpu().numpy(),
            sampled_ids.reshape(*shape, -1).cpu().numpy(), sampled_days.reshape(*shape, -1).cpu().numpy())


