"""Sampled futures: seeded, bounded by the horizon, conditioned on the intervention token."""

import numpy as np
import pytest
import torch

from modeling.ml.data.clinical import DIAGNOSTIC_CRITERIA, ENDPOINTS
from modeling.ml.twin.generate import bands, effect_summary, inverse_cdf_sample, simulate, start_rollouts
from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel
from modeling.ml.twin.risk import bin_share, event_weights
from modeling.ml.twin.tokens import BIOMARKER_NAMES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).eval()


@pytest.fixture(scope="module")
def histories(simulated, tokenizer):
    return [tokenizer.encode(record) for record in simulated.records[:6]]


def _run(model, tokenizer, histories, seed):
    return simulate(
        model,
        tokenizer,
        histories,
        arms=[None, "statin"],
        horizon_days=60,
        samples=3,
        seed=seed,
        max_new_tokens=48,
        batch_rows=12,
    )


def test_the_same_seed_gives_the_same_futures(model, tokenizer, histories):
    first, second = _run(model, tokenizer, histories, 7), _run(model, tokenizer, histories, 7)
    assert np.array_equal(first.sampled_ids, second.sampled_ids) and np.array_equal(first.expected, second.expected)
    other = _run(model, tokenizer, histories, 8)
    assert not np.array_equal(first.sampled_ids, other.sampled_ids)


def test_futures_stay_inside_the_horizon_and_every_grid_day_has_a_value(model, tokenizer, histories):
    rollouts = _run(model, tokenizer, histories, 1)
    last_days = np.array([tokens.last_day for tokens in histories])[:, None, None, None]
    sampled = rollouts.sampled_ids > 0
    assert sampled.any()
    assert (rollouts.sampled_days[sampled] >= np.broadcast_to(last_days, sampled.shape)[sampled]).all()
    assert (rollouts.sampled_days[sampled] <= np.broadcast_to(last_days + 60, sampled.shape)[sampled]).all()
    assert rollouts.expected.shape == (6, 2, 3, len(rollouts.grid_days), len(BIOMARKER_NAMES))
    assert not np.isnan(rollouts.expected).any() and (rollouts.risk >= 0).all()
    assert ((rollouts.endpoint_risk() >= 0) & (rollouts.endpoint_risk() <= 1)).all()


def test_the_intervention_arm_differs_from_the_control_arm_only_through_its_token(model, tokenizer, histories):
    # Arms: control, statin, control again; 2 samples each. Step 0 samples from the prediction right after the start token.
    arm_ids = torch.tensor([0, tokenizer.token_id("intervention:statin"), 0])
    begun = start_rollouts(model, histories, arm_ids, samples=2, max_history_tokens=192, max_new_tokens=4)
    logits = begun.logits.reshape(len(histories), 3, 2, -1)  # (participants, arms, samples, vocab)
    assert torch.equal(logits[:, 0], logits[:, 2]) and torch.equal(logits[:, :, 0], logits[:, :, 1])
    assert (
        (logits[:, 1] - logits[:, 0]).abs().amax(-1) > 1e-3
    ).all()  # the statin token moves every participant's prediction
    rollouts = _run(model, tokenizer, histories, 2)
    summary = effect_summary(rollouts, participant=0, arm=1)
    assert set(summary) == set(BIOMARKER_NAMES) and all(s["low"] <= s["mean"] <= s["high"] for s in summary.values())
    fan = bands(rollouts, participant=0, arm=0)
    assert fan["ldl"]["0.05"][0] <= fan["ldl"]["0.5"][0] <= fan["ldl"]["0.95"][0]


def test_a_history_starts_the_same_alone_as_in_a_batch_of_other_lengths(model, tokenizer, histories):
    # Histories are prefilled in batches of similar length and placed in one left-padded cache: neither the batch
    # nor the padding may change a participant's start.
    arm_ids = torch.tensor([0, tokenizer.token_id("intervention:statin")])
    cropped = [
        history.slice(history.last_day - 40 * (index + 1)) for index, history in enumerate(histories)
    ]  # different lengths
    together = start_rollouts(model, cropped, arm_ids, samples=1, max_history_tokens=192, max_new_tokens=2)
    for index, history in enumerate(cropped):
        alone = start_rollouts(model, [history], arm_ids, samples=1, max_history_tokens=192, max_new_tokens=2)
        assert torch.allclose(together.logits[2 * index : 2 * index + 2], alone.logits, atol=1e-5)
        assert torch.allclose(together.rate[2 * index : 2 * index + 2], alone.rate, atol=1e-5)


def test_dropping_finished_rows_gives_the_same_futures_as_stepping_every_row_to_the_end(model, tokenizer, histories):
    # Sampled tokens and days are identical whether finished rows leave the batch or step on to the end (the
    # uniforms are drawn for every participant and sample, whoever is still in the batch); expectations and risks
    # agree to float rounding, as a smaller batch can round matrix products differently.
    for seed, rows in ((5, 12), (6, 36)):
        arguments = {
            "arms": [None, "statin"],
            "horizon_days": 60,
            "samples": 3,
            "seed": seed,
            "max_new_tokens": 48,
            "batch_rows": rows,
        }
        now, before = (
            simulate(model, tokenizer, histories, **arguments),
            simulate(model, tokenizer, histories, **arguments, compact_below=0.0),
        )
        stopped = (now.sampled_ids > 0).sum(-1)
        assert stopped.min() < stopped.max()  # rows do stop at different steps: some were dropped early
        assert np.array_equal(now.sampled_ids, before.sampled_ids) and np.array_equal(
            now.sampled_days, before.sampled_days
        )
        np.testing.assert_allclose(now.expected, before.expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(now.risk, before.risk, rtol=1e-4, atol=1e-6)


def test_arms_that_do_not_differ_sample_the_same_future_row_for_row(model, tokenizer, histories):
    # Common random numbers: two control arms see the same uniforms at every step, so they write the same tokens
    # on the same days, sample by sample, even though every sample differs from the others.
    rollouts = simulate(
        model,
        tokenizer,
        histories,
        arms=[None, None],
        horizon_days=60,
        samples=3,
        seed=3,
        max_new_tokens=48,
        batch_rows=12,
    )
    assert np.array_equal(rollouts.sampled_ids[:, 0], rollouts.sampled_ids[:, 1])
    assert np.array_equal(rollouts.sampled_days[:, 0], rollouts.sampled_days[:, 1])
    assert not np.array_equal(rollouts.sampled_ids[:, :, 0], rollouts.sampled_ids[:, :, 1])


def test_common_random_numbers_shrink_the_spread_of_the_paired_difference(model, tokenizer, histories):
    arguments = {"horizon_days": 60, "samples": 8, "max_new_tokens": 48, "batch_rows": 96}
    paired = simulate(model, tokenizer, histories, arms=[None, "statin"], seed=4, **arguments)
    # The same arms without common random numbers: each simulated on its own, from its own seed.
    control = simulate(model, tokenizer, histories, arms=[None], seed=5, **arguments)
    treated = simulate(model, tokenizer, histories, arms=["statin"], seed=6, **arguments)
    crn_difference = paired.expected[:, 1, :, -1] - paired.expected[:, 0, :, -1]  # (participants, samples, biomarkers)
    independent_difference = treated.expected[:, 0, :, -1] - control.expected[:, 0, :, -1]
    scale = paired.expected[:, 0, :, -1].std(axis=(0, 1))  # (biomarkers,): compare biomarkers on one footing
    crn_spread = (crn_difference.var(axis=1) / scale**2).mean()  # mean over participants and biomarkers
    independent_spread = (independent_difference.var(axis=1) / scale**2).mean()
    assert crn_spread < 0.5 * independent_spread


def test_inverse_cdf_sampling_follows_the_probabilities_and_never_picks_an_impossible_token():
    probabilities = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0]]).expand(4001, -1)
    uniform = torch.linspace(0, 1, 4001).clamp(max=1 - 2**-24)  # evenly spread, up to the largest float below 1
    tokens = inverse_cdf_sample(probabilities, uniform)
    assert set(tokens.tolist()) == {1, 3, 4} and tokens[-1] == 4  # the top end lands on the last possible token
    np.testing.assert_allclose(np.bincount(tokens.numpy(), minlength=6) / 4001, [0, 0.2, 0, 0.5, 0.3, 0], atol=1e-3)
    # A sum that rounds below one: still one of the possible tokens at the top end.
    rounded = torch.tensor([[0.3, 0.3, 0.3999, 0.0]])
    assert inverse_cdf_sample(rounded, torch.tensor([1 - 2**-24])).item() == 2


def test_the_readout_changes_what_is_read_not_what_is_sampled(model, tokenizer, histories):
    """ "state" reads the expectation where the rollout stands at each grid day; "measured" holds the latest sampled
    measurement's. Same futures and risks either way, different values."""
    kwargs = {
        "arms": [None, "statin"],
        "horizon_days": 60,
        "samples": 3,
        "seed": 4,
        "max_new_tokens": 48,
        "batch_rows": 12,
        "grid_step_days": 5,
    }
    state = simulate(model, tokenizer, histories, readout="state", **kwargs)
    measured = simulate(model, tokenizer, histories, readout="measured", **kwargs)
    assert np.array_equal(state.sampled_ids, measured.sampled_ids) and np.array_equal(state.risk, measured.risk)
    assert not np.allclose(state.expected, measured.expected)
    with pytest.raises(ValueError, match="readout"):
        simulate(model, tokenizer, histories, readout="latest", **kwargs)


def test_a_simulation_starts_at_each_person_s_latest_measured_values_in_every_arm(model, tokenizer, histories):
    rollouts = _run(model, tokenizer, histories, 3)
    for person, tokens in enumerate(histories):
        latest = tokenizer.latest_values(tokens)
        measured = ~np.isnan(latest)
        assert measured.any()
        day0 = rollouts.expected[person, :, :, 0, :]  # (arms, samples, biomarkers)
        # the person's own values (not bin medians), the same in every arm and sample
        assert np.allclose(day0[..., measured], latest[measured], rtol=1e-5)
    ldl = BIOMARKER_NAMES.index("ldl")
    assert len(np.unique(rollouts.expected[:, 0, 0, 0, ldl].round(3))) == len(histories)  # not one population value


def test_the_horizon_is_read_at_a_visit_measuring_every_biomarker(model, tokenizer, histories):
    from modeling.ml.twin.generate import horizon_visit

    arm_ids = torch.tensor([0])
    horizon = 30
    # No step inside the horizon (max_new_tokens=0): the horizon is read from the history's own prediction.
    rollouts = simulate(
        model, tokenizer, histories, arms=[None], horizon_days=horizon, samples=1, seed=0, max_new_tokens=0
    )
    begun = start_rollouts(model, histories, arm_ids, samples=1, max_history_tokens=192, max_new_tokens=32)
    bins = torch.tensor(np.stack([tokenizer.measurement_ids(name) for name in BIOMARKER_NAMES]))
    centers = torch.tensor(np.stack([tokenizer.centers[name] for name in BIOMARKER_NAMES]), dtype=torch.float32)
    expected = horizon_visit(
        model, begun.cache, begun.logits, begun.start_day, begun.start_day + horizon, begun.age, bins, centers
    )
    assert np.allclose(rollouts.expected[:, 0, 0, -1, :], expected.numpy(), rtol=1e-4, atol=1e-4)
    # Each biomarker after the first is read after the visit's earlier tokens: not the same as reading every
    # biomarker from the history's last prediction.
    probabilities = torch.softmax(begun.logits, -1)[:, bins]
    at_once = (probabilities / probabilities.sum(-1, keepdim=True) * centers).sum(-1)
    assert torch.allclose(expected[:, 0], at_once[:, 0], atol=1e-4)
    assert not torch.allclose(expected[:, 1:], at_once[:, 1:], atol=1e-3)


def test_sampling_divides_out_the_training_loss_weights(model, tokenizer, histories):
    import math

    from modeling.ml.twin.generate import loss_weight_prior
    from modeling.ml.twin.model import DEFAULT_MODALITY_WEIGHTS

    prior = loss_weight_prior(model)
    death, ldl = tokenizer.token_id("endpoint:death"), tokenizer.measurement_ids("ldl")[5]
    # an endpoint was weighted 3 against a lab's 1: sampled a third as often as the trained softmax says
    expected = math.log(DEFAULT_MODALITY_WEIGHTS["endpoint"] / DEFAULT_MODALITY_WEIGHTS["lab"])
    assert float(prior[death] - prior[ldl]) == pytest.approx(expected)
    static = [tokenizer.token_id(name) for name in ("sex:female", "sex:male", "smoker:yes", "smoker:no")]
    assert (prior[[0, *static]] == float("inf")).all()  # never trained as targets: never sampled
    rollouts = _run(model, tokenizer, histories, 5)
    assert not np.isin(rollouts.sampled_ids, static).any()


def test_a_bin_share_is_the_part_of_the_bin_beyond_the_limit(tokenizer):
    edges, centers = tokenizer.edges["ldl"], tokenizer.centers["ldl"]
    limit = (edges[3] + edges[4]) / 2  # the middle of bin 5 (1-based)
    share = bin_share(tokenizer, "ldl", ">=", limit)
    assert share[:4].tolist() == [0.0] * 4 and share[5:].tolist() == [1.0] * (len(share) - 5)
    assert share[4] == pytest.approx(0.5)
    np.testing.assert_allclose(bin_share(tokenizer, "ldl", "<", limit), 1.0 - share)
    # an open end bin spreads over [its edge, 2 x its median - edge]
    top = (edges[-1] + 2 * centers[-1] - edges[-1]) / 2
    assert bin_share(tokenizer, "ldl", ">=", top)[-1] == pytest.approx(0.5)


def test_event_weights_read_a_diagnosis_from_its_measurements_and_an_endpoint_from_its_token(tokenizer):
    weights = event_weights(tokenizer)
    lipids, death = ENDPOINTS.index("dyslipidaemia"), ENDPOINTS.index("death")
    np.testing.assert_allclose(
        weights[tokenizer.measurement_ids("ldl"), lipids], bin_share(tokenizer, "ldl", ">=", 190)
    )
    assert weights[tokenizer.token_id("diagnosis:dyslipidaemia"), lipids] == 0
    assert weights[tokenizer.token_id("endpoint:death"), death] == 1 and weights[:, death].sum() == 1
    hypertension = ENDPOINTS.index("hypertension")  # home readings make no diagnosis: its own token
    assert weights[tokenizer.token_id("diagnosis:hypertension"), hypertension] == 1
    assert weights[:, hypertension].sum() == 1 and weights[0].sum() == 0  # padding is no event


def test_the_risk_is_the_sampled_first_event_frequency_in_expectation(model, tokenizer, histories, monkeypatch):
    """The summed hazards estimate what counting the sampled events estimates, with less noise: on 1,200 rows of an
    untrained model (events are frequent there) the two means agree within sampling error, for an endpoint read from
    its token and for a diagnosis read from measurements across a limit inside a bin (partial shares)."""
    edges = tokenizer.edges["ldl"]
    monkeypatch.setitem(DIAGNOSTIC_CRITERIA, "dyslipidaemia", (("ldl", ">=", (edges[4] + edges[5]) / 2),))
    rollouts = simulate(
        model, tokenizer, histories, arms=[None], horizon_days=60, samples=200, seed=5, max_new_tokens=48
    )
    weights = event_weights(tokenizer)
    counted = 1.0 - np.prod(1.0 - weights[rollouts.sampled_ids], axis=-2)  # (participants, arms, samples, endpoints)
    for endpoint in ("dyslipidaemia", "death", "stroke"):
        column = ENDPOINTS.index(endpoint)
        estimate, frequency = rollouts.risk[..., column].mean(), counted[..., column].mean()
        error = counted[..., column].std() / np.sqrt(counted[..., column].size)
        assert frequency > 0.01 and abs(estimate - frequency) < 4 * error + 1e-3, (endpoint, estimate, frequency)
        assert rollouts.risk[..., column].std() < counted[..., column].std()  # less noise per row


def test_obesity_is_read_from_the_weight_against_each_person_s_own_limit_where_the_height_is_known(
    model, tokenizer, histories
):
    """With a height, obesity's hazard is the chance that the next token is a weight whose BMI reaches 30 at that
    height (a limit inside a bin: partial shares), and its summed hazards estimate the sampled frequency of such a
    weight; without one, it is read from the diagnosis token, as before."""
    from dataclasses import replace

    from modeling.ml.data.clinical import OBESITY_BMI

    edges = tokenizer.edges["weight"]
    inside = [(edges[k] + edges[k + 1]) / 2 for k in (len(edges) // 4, len(edges) // 2, 3 * len(edges) // 4)]
    heights = [float(np.sqrt(limit / OBESITY_BMI)) for limit in inside] + [None] * (len(histories) - 3)
    people = [replace(tokens, height_m=height) for tokens, height in zip(histories, heights, strict=True)]
    rollouts = simulate(model, tokenizer, people, arms=[None], horizon_days=60, samples=200, seed=5, max_new_tokens=48)
    column, weight_ids = ENDPOINTS.index("obesity"), tokenizer.measurement_ids("weight")
    token_weights = event_weights(tokenizer)[:, column]
    for person, height in enumerate(heights):
        ids = rollouts.sampled_ids[person, 0]  # (samples, steps)
        if height is None:
            per_token = token_weights
        else:
            per_token = np.zeros(tokenizer.vocab_size)
            per_token[weight_ids] = bin_share(tokenizer, "weight", ">=", OBESITY_BMI * height**2)
        counted = 1.0 - np.prod(1.0 - per_token[ids], axis=-1)  # (samples,)
        estimate = rollouts.risk[person, 0, :, column].mean()
        error = counted.std() / np.sqrt(counted.size)
        assert abs(estimate - counted.mean()) < 4 * error + 1e-3, (person, height, estimate, counted.mean())
        if height is not None:
            assert counted.mean() > 0.01  # an untrained model samples weights often: the read-out is exercised
    # the same rows read from the token instead: another risk where the height is known, the same where it is not
    by_token = simulate(
        model,
        tokenizer,
        histories,
        arms=[None],
        horizon_days=60,
        samples=200,
        seed=5,
        max_new_tokens=48,
        risk_from_measurements=("incident_diabetes", "dyslipidaemia", "chronic_kidney_disease"),
    )
    np.testing.assert_array_equal(by_token.sampled_ids, rollouts.sampled_ids)  # reading never changes sampling
    known = np.array([height is not None for height in heights])
    np.testing.assert_allclose(by_token.risk[~known, ..., column], rollouts.risk[~known, ..., column], rtol=1e-5)
    assert not np.allclose(by_token.risk[known, ..., column], rollouts.risk[known, ..., column])
