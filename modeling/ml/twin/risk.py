"""How a rollout's next-token distributions are read as endpoint risk: which tokens are a first event of each
endpoint (:func:`event_weights`; a diagnosis read from the measurements that make it, :data:`RISK_FROM_MEASUREMENTS`;
obesity against each person's own limit, :class:`WeightLimits`), and the model's calibration of those risks
(:func:`calibration_factors`). ``generate.simulate`` sums the hazards; ``Rollouts.endpoint_risk`` applies the factors."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from modeling.ml.data.clinical import DIAGNOSTIC_CRITERIA, ENDPOINTS, OBESITY_BMI
from modeling.ml.twin.model import HealthFormerModel
from modeling.ml.twin.tokens import HARD_ENDPOINTS, Tokenizer


def calibration_factors(
    model: HealthFormerModel, risk_from_measurements: Sequence[str], height_known: Sequence[bool] | None = None
) -> np.ndarray | None:
    """(participants, endpoints) the model's risk calibration in the order of ``ENDPOINTS`` (1 for an endpoint without
    one), one row per ``height_known`` entry (one row when it is None), or None for a model never calibrated, or
    calibrated on risks read otherwise (another ``risk_from_measurements``, or other endpoints of the hazard head).

    Risk read from measurements counts "a measurement meets the criterion", where the simulator diagnoses on the
    true value at a visit: a measurement's noise crosses the limit more often than the value does, so those risks
    rank well and over-predict. ``twin calibrate`` fits one factor per endpoint on a cohort of its own (calibration
    in the large: observed events over predicted), which leaves every ranking, and so every AUROC, as it was. The
    factors were fitted over one horizon (``risk_calibration_fit``, 365 days for the committed twin) and are applied
    at any: a proportional correction of the hazards, approximate for other horizons. Obesity is read from the weight
    only where the height is known (:class:`WeightLimits`); a participant without one has it read from its diagnosis
    token, whose factor is fitted apart (``risk_calibration_without_height``)."""
    factors = getattr(model.config, "risk_calibration", None)
    fit = getattr(model.config, "risk_calibration_fit", None) or {}
    if not factors or sorted(fit.get("risk_from_measurements", [])) != sorted(risk_from_measurements):
        return None
    if sorted(fit.get("hazard_endpoints", [])) != sorted(getattr(model.config, "hazard_endpoints", None) or []):
        return None  # fitted on endpoints read through another hazard head, or none
    known = np.ones(1, dtype=bool) if height_known is None else np.asarray(height_known, dtype=bool)
    table = np.tile([float(factors.get(endpoint, 1.0)) for endpoint in ENDPOINTS], (len(known), 1))
    without = getattr(model.config, "risk_calibration_without_height", None) or {}
    for endpoint, factor in without.items():
        table[~known, ENDPOINTS.index(endpoint)] = float(factor)
    return table


# Diagnoses whose risk is read from the measurements that make them, not from the diagnosis token. Hypertension keeps
# its token: blood pressure is also measured at home, where no diagnosis is made, and a measurement token does not say
# where it was taken. Obesity is read from the weight where the participant's height is known (WeightLimits).
RISK_FROM_MEASUREMENTS = ("incident_diabetes", "dyslipidaemia", "chronic_kidney_disease", "obesity")


def endpoint_token(tokenizer: Tokenizer, endpoint: str) -> int:
    return tokenizer.token_id(f"{'endpoint' if endpoint in HARD_ENDPOINTS else 'diagnosis'}:{endpoint}")


def bin_share(tokenizer: Tokenizer, biomarker: str, rule: str, limit: float) -> np.ndarray:
    """(bins,) the share of each of ``biomarker``'s bins that meets ``rule`` (">=" or "<") ``limit``, the bin's
    values taken as evenly spread between its edges; an open end bin's between its edge and its median's mirror
    image (2 x median - edge)."""
    edges, centers = tokenizer.edges[biomarker], tokenizer.centers[biomarker]
    low = np.concatenate([[2 * centers[0] - edges[0]], edges])
    high = np.concatenate([edges, [2 * centers[-1] - edges[-1]]])
    above: np.ndarray = np.clip((high - limit) / np.maximum(high - low, 1e-9), 0.0, 1.0)
    return above if rule == ">=" else 1.0 - above


def event_weights(tokenizer: Tokenizer, from_measurements: Sequence[str] = RISK_FROM_MEASUREMENTS) -> np.ndarray:
    """(vocab, endpoints): the probability that a next token of this id is a first event of the endpoint (in the
    order of ``ENDPOINTS``): 1 for the endpoint's own token; for a diagnosis of ``from_measurements``, the share of a
    measurement bin that meets one of its criteria, and 0 for the diagnosis token (it follows such a measurement).
    Obesity keeps its token here: its limit is each person's own (:class:`WeightLimits` replaces the column per row).

    For those diagnoses the event is "a measurement meets the criterion": the simulator diagnoses on the true value
    at a visit, and a measurement adds its noise (LDL about 7 mg/dL), so near the limit this over-predicts a little;
    and a row stopped by ``max_new_tokens`` before the horizon adds no more hazard, which under-predicts."""
    weights = np.zeros((tokenizer.vocab_size, len(ENDPOINTS)), dtype=np.float32)
    for column, endpoint in enumerate(ENDPOINTS):
        if endpoint in from_measurements and endpoint in DIAGNOSTIC_CRITERIA:  # obesity's limit: WeightLimits
            for biomarker, rule, limit in DIAGNOSTIC_CRITERIA[endpoint]:
                weights[tokenizer.measurement_ids(biomarker), column] = bin_share(tokenizer, biomarker, rule, limit)
        else:
            weights[endpoint_token(tokenizer, endpoint), column] = 1.0
    return weights


@dataclass
class WeightLimits:
    """Obesity read from the weight, each participant's against their own limit (a BMI of ``OBESITY_BMI`` at their
    height): per row, the share of each weight bin at or above it (:func:`bin_share`). The event weights of
    :func:`event_weights` are the same for everyone; this replaces their obesity column for the rows whose height is
    known. A row without one keeps the diagnosis token."""

    column: int  # obesity's in ENDPOINTS
    ids: torch.Tensor  # (bins,) the weight bins' token ids
    position: torch.Tensor  # (vocab,) a token's place among ``ids``, -1 for every other token
    share: torch.Tensor  # (rows, bins)
    known: torch.Tensor  # (rows,) bool: the height is known

    @classmethod
    def of(cls, tokenizer: Tokenizer, heights: Sequence[float | None], device: torch.device) -> "WeightLimits":
        """For participants of ``heights`` (metres, None when unknown), one row each."""
        ids = tokenizer.measurement_ids("weight")
        position = np.full(tokenizer.vocab_size, -1, dtype=np.int64)
        position[ids] = np.arange(len(ids))
        share = np.stack(
            [
                np.zeros(len(ids)) if height is None else bin_share(tokenizer, "weight", ">=", OBESITY_BMI * height**2)
                for height in heights
            ]
        )
        return cls(
            ENDPOINTS.index("obesity"),
            torch.tensor(ids, device=device),
            torch.tensor(position, device=device),
            torch.tensor(share, dtype=torch.float32, device=device),
            torch.tensor([height is not None for height in heights], dtype=torch.bool, device=device),
        )

    def rows(self, index: torch.Tensor) -> "WeightLimits":
        return WeightLimits(self.column, self.ids, self.position, self.share[index], self.known[index])

    def hazards(self, probabilities: torch.Tensor, hazards: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """``hazards`` (batch, endpoints) with obesity's the probability that the next token is a weight over the
        limit, for the ``members`` (batch,) whose height is known."""
        measured = (probabilities[:, self.ids] * self.share[members]).sum(-1)
        hazards[:, self.column] = torch.where(self.known[members], measured, hazards[:, self.column])
        return hazards

    def events(self, token: torch.Tensor, events: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """``events`` (batch, endpoints), the sampled tokens' event weights, with obesity's the sampled weight's share
        over the limit (0 for any other token, the diagnosis token included) where the height is known."""
        place = self.position[token]
        over = self.share[members].gather(1, place.clamp(min=0)[:, None])[:, 0]
        measured = torch.where(place >= 0, over, torch.zeros_like(over))
        events[:, self.column] = torch.where(self.known[members], measured, events[:, self.column])
        return events
