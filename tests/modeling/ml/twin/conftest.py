"""Simulated records and a fitted tokenizer shared by the twin's tests."""

import pytest

from modeling.ml.twin.data import simulated_records
from modeling.ml.twin.tokens import Tokenizer


@pytest.fixture(scope="package")
def simulated():
    return simulated_records(participants=24, days=400, seed=3)


@pytest.fixture(scope="package")
def tokenizer(simulated):
    return Tokenizer.fit(simulated.records, bins=12)
