"""The hazard head: its rows count each day once, its fit recovers a known rate, a rollout integrates it over days."""

import json

import numpy as np
import pytest
import torch

from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.data import window_indices
from modeling.ml.twin.generate import simulate
from modeling.ml.twin.hazard import (
    HAZARD_ENDPOINTS,
    POOLING,
    HazardRows,
    day_boundaries,
    fit_hazard_head,
    hazard_rows,
)
from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel
from modeling.ml.twin.risk import endpoint_token
from modeling.ml.twin.tokens import ParticipantRecord

pytestmark = pytest.mark.slow


def _record(days: list[int], *, event_day: int | None = None, last_day: int = 400) -> ParticipantRecord:
    events = [] if event_day is None else [{"day": event_day, "kind": "endpoint", "name": "stroke"}]
    return ParticipantRecord(
        age_years=60.0,
        sex="female",
        smoker=False,
        measurements=[{"day": day, "name": "ldl", "value": 120.0} for day in days],
        events=events,
        last_day=last_day,
    )


def test_every_day_of_a_record_is_exposed_once_across_its_windows(tokenizer):
    # 3 readings on each of 60 days: windows of 32 tokens cut the record in several places, some inside a day
    record = _record([day for day in range(0, 300, 5) for _ in range(3)], last_day=400)
    tokens = tokenizer.encode(record)
    windows = window_indices(tokens, 32)
    assert len(windows) > 4
    exposed = 0.0
    for number, (keep, own_from) in enumerate(windows):
        positions, exposure, next_day = day_boundaries(
            tokens, keep, own_from, number == 0, number == len(windows) - 1, record.last_day
        )
        days = tokens.days[keep]
        assert (exposure > 0).all() and (positions >= (own_from - 1 if number == 0 else own_from)).all()
        assert (np.diff(days[positions]) > 0).all()  # a day's last token only
        exposed += exposure.sum()
        if number == len(windows) - 1:
            assert np.isinf(next_day[-1]) and exposure[-1] == 400 - 295
    # every day from the first reading to the record's end, but the gaps between one window and the next
    assert 400 - 5 * (len(windows) - 1) <= exposed <= 400


def test_an_event_counts_on_the_day_it_happens_and_its_endpoint_is_not_at_risk_after(tokenizer):
    model = HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).eval()
    records = [_record([10, 20, 30, 40], event_day=30, last_day=100), _record([10, 20], last_day=50)]
    rows = hazard_rows(model, tokenizer, records, ("stroke", "death"))
    first = rows.person == 0
    # the first record: boundaries on days 0 (static), 10, 20, 30 and 40 (to day 100); the event on day 30
    assert rows.exposure[torch.from_numpy(first)].tolist() == [10, 10, 10, 10, 60]
    assert rows.events[torch.from_numpy(first), 0].tolist() == [False, False, True, False, False]
    assert rows.at_risk[torch.from_numpy(first), 0].tolist() == [True, True, True, False, False]
    assert rows.at_risk[:, 1].all() and not rows.events[:, 1].any()
    assert rows.exposure[torch.from_numpy(~first)].tolist() == [10, 10, 30]


def test_the_fit_recovers_a_known_rate_per_day():
    generator = torch.Generator().manual_seed(0)
    features = 3.0 + 2.0 * torch.randn(200_000, 3, generator=generator)  # the head reads them unstandardized
    exposure = torch.randint(1, 60, (200_000,), generator=generator).float()
    true_log_rate = torch.stack([-9.0 + 0.4 * features[:, 0], -8.25 - 0.25 * features[:, 1]], dim=1)
    events = torch.rand(200_000, 2, generator=generator) < 1 - torch.exp(-torch.exp(true_log_rate) * exposure[:, None])
    rows = HazardRows(features, exposure, torch.ones(200_000, 2, dtype=torch.bool), events, np.zeros(200_000))
    head = fit_hazard_head(rows, penalty=0.0)
    assert head.weight[0].tolist() == pytest.approx([0.4, 0.0, 0.0], abs=0.03)
    assert head.weight[1].tolist() == pytest.approx([0.0, -0.25, 0.0], abs=0.04)
    assert head.bias.tolist() == pytest.approx([-9.0, -8.25], abs=0.15)


def test_pooled_endpoints_share_their_weights_as_far_as_their_own_events_allow():
    generator = torch.Generator().manual_seed(1)
    features = 3.0 + 2.0 * torch.randn(200_000, 3, generator=generator)  # the head reads them unstandardized
    exposure = torch.randint(1, 60, (200_000,), generator=generator).float()
    # the same slope on the first feature; the second endpoint also its own on the second, and a fifth of the events
    true_log_rate = torch.stack(
        [-9.5 + 0.5 * features[:, 0], -12.6 + 0.5 * features[:, 0] + 0.5 * features[:, 1]], dim=1
    )
    events = torch.rand(200_000, 2, generator=generator) < 1 - torch.exp(-torch.exp(true_log_rate) * exposure[:, None])
    rows = HazardRows(features, exposure, torch.ones(200_000, 2, dtype=torch.bool), events, np.zeros(200_000))
    # a deviation that costs next to nothing: each endpoint's own weights, as fitted alone
    free = fit_hazard_head(rows, penalty=0.0, pooling=1e-9)
    alone = fit_hazard_head(rows, penalty=0.0)
    assert torch.allclose(free.weight, alone.weight, atol=0.01) and torch.allclose(free.bias, alone.bias, atol=0.05)
    assert free.weight[1].tolist() == pytest.approx([0.5, 0.5, 0.0], abs=0.04)
    assert free.bias.tolist() == pytest.approx([-9.5, -12.6], abs=0.2)
    # a deviation that costs everything: one vector for both, fitted on all their events, each its own level
    shared = fit_hazard_head(rows, penalty=0.0, pooling=10.0)
    assert torch.allclose(shared.weight[0], shared.weight[1], atol=1e-3)
    assert shared.weight[0, 0].item() == pytest.approx(0.5, abs=0.05)
    assert 0.02 < shared.weight[0, 1].item() < 0.3  # between the first endpoint's 0 and the second's 0.5
    level = shared(torch.full((1, 3), 3.0))[0]  # at the features' mean, the second endpoint's fifth of the events
    assert level[0].item() > level[1].item() + 1.0
    # in between, each keeps part of its own slope, and the rarer endpoint gives up more of it
    middle = fit_hazard_head(rows, penalty=0.0, pooling=3e-3)
    assert shared.weight[1, 1].item() + 0.05 < middle.weight[1, 1].item() < free.weight[1, 1].item() - 0.05
    rare_gave, common_gave = free.weight[1, 1] - middle.weight[1, 1], middle.weight[0, 1] - free.weight[0, 1]
    assert rare_gave.item() > 2 * common_gave.item() > 0
    # the penalty on the shared weights: all of them when the deviations cost everything, none when they are free
    assert fit_hazard_head(rows, penalty=10.0, pooling=10.0).weight.abs().max().item() < 0.02
    assert torch.allclose(fit_hazard_head(rows, penalty=10.0, pooling=1e-9).weight, alone.weight, atol=0.01)
    with pytest.raises(ValueError, match="above 0"):
        fit_hazard_head(rows, penalty=0.0, pooling=0.0)


def test_a_rollout_adds_the_head_s_rate_over_every_day_to_the_horizon(tokenizer, simulated):
    torch.manual_seed(0)
    config = HealthFormerConfig.named("tiny", tokenizer, block_size=128, hazard_endpoints=["stroke", "death"])
    model = HealthFormerModel(config).eval()
    with torch.no_grad():  # 1 in 1,000 per day of a stroke, 1 in 2,000 of death, whatever the state
        model.hazard_head.weight.zero_()
        model.hazard_head.bias.copy_(torch.log(torch.tensor([1e-3, 5e-4])))
    histories = [tokenizer.encode(record) for record in simulated.records[:6]]
    rollouts = simulate(
        model, tokenizer, histories, arms=[None, "statin"], horizon_days=90, samples=3, seed=1, max_new_tokens=400
    )
    ids = rollouts.sampled_ids
    free = ~np.isin(ids, [endpoint_token(tokenizer, "stroke"), endpoint_token(tokenizer, "death")]).any(-1)
    assert free.sum() > 20
    stroke, death = ENDPOINTS.index("stroke"), ENDPOINTS.index("death")
    assert rollouts.risk[..., stroke][free] == pytest.approx(90 * 1e-3, rel=1e-4)
    assert rollouts.risk[..., death][free] == pytest.approx(90 * 5e-4, rel=1e-4)
    # rows out of tokens before the horizon keep the last state's rate to the horizon
    short = simulate(model, tokenizer, histories, arms=[None], horizon_days=90, samples=3, seed=1, max_new_tokens=2)
    short_free = ~np.isin(short.sampled_ids, [endpoint_token(tokenizer, "stroke"), endpoint_token(tokenizer, "death")])
    assert (short.sampled_days[..., -1] > 0).any()  # some rows used both tokens inside the horizon
    assert short.risk[..., stroke][short_free.all(-1)] == pytest.approx(90 * 1e-3, rel=1e-4)
    # the endpoints the head does not hold keep the next-token read-out: the same as a model without a head
    model.hazard_head, model.config.hazard_endpoints = None, []
    plain = simulate(
        model, tokenizer, histories, arms=[None, "statin"], horizon_days=90, samples=3, seed=1, max_new_tokens=400
    )
    others = [column for column in range(len(ENDPOINTS)) if column not in (stroke, death)]
    assert np.array_equal(plain.sampled_ids, ids)
    assert np.allclose(plain.risk[..., others], rollouts.risk[..., others])
    assert not np.allclose(plain.risk[..., stroke], rollouts.risk[..., stroke])


def test_the_command_fits_the_head_into_the_model_and_refuses_a_trained_seed(tmp_path):
    from modeling.ml.train import TrainConfig
    from modeling.ml.twin.hazard import add_hazard_head
    from modeling.ml.twin.training import load_twin, train_twin, training_seeds

    config = TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=100, log_every=10)
    train_twin(size="tiny", participants=20, days=200, seed=4, train_config=config, output_dir=tmp_path, bins=8)
    model_dir = tmp_path / "model"
    model, _ = load_twin(model_dir)
    model.config.risk_calibration = {"death": 1.5}
    model.config.save_pretrained(model_dir)
    (model_dir / "calibration.json").write_text("{}")
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(ValueError, match="trained on"):
        add_hazard_head(model_dir, participants=30, seed=4)
    with pytest.raises(ValueError, match="measurements"):
        add_hazard_head(model_dir, participants=30, seed=9, endpoints=("stroke", "dyslipidaemia"))
    heard = []
    fit = add_hazard_head(model_dir, participants=200, seed=9, days=400, progress=lambda *call: heard.append(call))
    assert fit["seed"] == 9 and set(fit["events"]) == set(HAZARD_ENDPOINTS) and fit["pooling"] == POOLING
    # a job hears of each part of it (its heartbeat), in order, to the end
    fractions = [fraction for fraction, _ in heard]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(heard) > 5
    assert {message.split(" ")[0] for _, message in heard} >= {"simulating", "read", "fitting", "hazard"}
    loaded, _ = load_twin(model_dir)
    assert loaded.config.hazard_endpoints == list(HAZARD_ENDPOINTS) and loaded.config.risk_calibration == {}
    assert not (model_dir / "calibration.json").exists()
    assert loaded.hazard_head is not None and loaded.hazard_head.weight.abs().sum() > 0
    weight = loaded.hazard_head.weight  # pooled: every endpoint ranks by one vector, each at its own level
    assert (weight - weight[0]).abs().max() < 0.05 * weight.abs().max() and loaded.hazard_head.bias.unique().numel() > 1
    # the trunk and the other heads are as they were
    assert all(torch.equal(loaded.state_dict()[name], tensor) for name, tensor in before.items())
    assert training_seeds(model_dir) == {4, 9}
    assert json.loads((model_dir / "config.json").read_text())["hazard_fit"]["participants"] == 200
    # fitted again, on its own seed or another, the head replaces the one before; the trunk's seed stays refused
    assert add_hazard_head(model_dir, participants=100, seed=9, days=400)["participants"] == 100
    assert add_hazard_head(model_dir, participants=100, seed=11, days=400)["seed"] == 11
    assert training_seeds(model_dir) == {4, 11}
    with pytest.raises(ValueError, match="trained on"):
        add_hazard_head(model_dir, participants=30, seed=4)
    # from the command line, a negative --pooling fits each endpoint alone, as before session 41
    from modeling.ml.__main__ import main

    main(["twin", "hazard", "--model", str(model_dir), "--participants", "100", "--seed", "11", "--pooling", "-1"])
    alone, _ = load_twin(model_dir)
    assert alone.config.hazard_fit["pooling"] is None and alone.config.hazard_fit["participants"] == 100
    weight = alone.hazard_head.weight
    assert (weight - weight[0]).abs().max() > 0.2 * weight.abs().max()


def test_a_rollout_s_head_reads_at_a_history_s_last_token_what_its_fit_read_there(tokenizer, simulated):
    from modeling.ml.twin.generate import start_rollouts
    from modeling.ml.twin.hazard import static_flags
    from modeling.ml.twin.model import hazard_inputs

    torch.manual_seed(1)
    config = HealthFormerConfig.named("tiny", tokenizer, block_size=512, hazard_endpoints=list(HAZARD_ENDPOINTS))
    model = HealthFormerModel(config).eval()
    with torch.no_grad():  # weights on every input: a mismatch in any of them changes the rate
        model.hazard_head.weight.normal_(0.0, 0.3)
    record = simulated.records[2]
    tokens = tokenizer.encode(record)
    tokens.last_day = int(tokens.days[-1])  # the rollout starts on the day of the history's last token
    assert len(tokens) < 192 and record.smoker is not None
    # the fit's rows of the same history, with 30 quiet days after it: its last row is the history's last token
    fit_record = ParticipantRecord(**{**record.__dict__, "last_day": tokens.last_day + 30})
    fit_record.measurements = [m for m in record.measurements if m["day"] <= tokens.last_day]
    fit_record.events = [e for e in record.events if e["day"] <= tokens.last_day]
    rows = hazard_rows(model, tokenizer, [fit_record], HAZARD_ENDPOINTS)
    assert rows.exposure[-1] == 30
    with torch.no_grad():
        fitted = torch.exp(model.hazard_head(rows.features[-1]))
        begun = start_rollouts(model, [tokens], torch.tensor([0]), samples=1, max_history_tokens=192, max_new_tokens=1)
        carried = begun.cache.carried
        static = torch.from_numpy(static_flags(tokens))[None]  # as the rollout reads them (generate._simulate_chunk)
        read = model.hazard(
            begun.hidden, hazard_inputs(carried.latest_value, carried.latest_day, begun.start_day, begun.age, static)
        )
    assert read[0].tolist() == pytest.approx(fitted.tolist(), rel=1e-4)
