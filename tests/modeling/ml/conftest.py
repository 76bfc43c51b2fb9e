"""Shared fixtures of the model-library tests."""

import numpy as np
import pytest
import torch

from modeling.ml.data.cohort import make_cohort
from modeling.ml.lsm.model import standardize


@pytest.fixture(scope="module")
def windows():
    """Standardized day windows of six simulated participants, and their observed masks."""
    cohort = make_cohort(participants=6, days=2, seed=2)
    values = np.concatenate([cohort.participant(i).minutes.values for i in range(6)])
    observed = np.concatenate([cohort.participant(i).minutes.mask for i in range(6)])
    masked_values = np.where(observed, values, np.nan)
    mean = torch.tensor(np.nan_to_num(np.nanmean(masked_values, axis=(0, 2))))
    std = torch.tensor(np.nan_to_num(np.nanstd(masked_values, axis=(0, 2)), nan=1.0)) + 1e-6
    observed = torch.tensor(observed)
    return standardize(torch.tensor(np.nan_to_num(values)), observed, mean, std), observed
