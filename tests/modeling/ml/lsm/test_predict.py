"""The reference cohort behind the prediction probes is simulated and embedded once per model, then kept beside it."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from modeling.ml.lsm import predict
from modeling.ml.lsm.predict import reference_cache_path, reference_representation

DEMO_LSM = Path(predict.__file__).resolve().parents[3] / "modeling" / "demo_weights" / "lsm"


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "lsm"
    shutil.copytree(DEMO_LSM, folder)
    for kept in folder.glob("reference-*.npz"):
        kept.unlink()
    return folder


def test_the_reference_cohort_is_embedded_once_and_read_back_the_same(model_dir, monkeypatch):
    embeddings, labels = reference_representation(model_dir, participants=12, days=1, seed=5)
    assert reference_cache_path(model_dir, participants=12, days=1, seed=5).exists()
    assert not list(model_dir.glob("*.partial.npz"))

    def not_again(*args, **kwargs):
        raise AssertionError("the kept reference cohort was simulated again")

    monkeypatch.setattr(predict, "represent", not_again)
    kept_embeddings, kept_labels = reference_representation(model_dir, participants=12, days=1, seed=5)
    np.testing.assert_array_equal(kept_embeddings, embeddings)
    assert sorted(kept_labels) == sorted(labels)
    for name, values in labels.items():
        np.testing.assert_array_equal(kept_labels[name], values)


def test_a_kept_reference_of_other_weights_is_computed_again(model_dir, monkeypatch):
    reference_representation(model_dir, participants=12, days=1, seed=5)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes: still valid
    calls = []
    real = predict.represent
    monkeypatch.setattr(predict, "represent", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    reference_representation(model_dir, participants=12, days=1, seed=5)
    assert calls == []
    reference_representation(model_dir, participants=12, days=1, seed=6)  # another cohort asked for
    assert calls == [1]

    path = reference_cache_path(model_dir, participants=12, days=1, seed=5)
    with np.load(path) as kept:
        stale = {name: kept[name] for name in kept.files}
    np.savez(path, **{**stale, "fingerprint": np.array("weights of another model")})
    reference_representation(model_dir, participants=12, days=1, seed=5)
    assert calls == [1, 1]


def test_a_model_folder_that_cannot_be_written_still_gets_its_probes(model_dir, monkeypatch):
    def refused(path, **arrays):
        open(path, "wb").close()  # a partial file, then the disk refuses
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(predict.np, "savez_compressed", refused)
    embeddings, labels = reference_representation(model_dir, participants=12, days=1, seed=5)
    assert embeddings.shape[0] == 12 and labels
    assert not list(model_dir.glob("*.npz"))  # neither a kept file nor the partial one


def test_a_damaged_kept_file_is_computed_again(model_dir):
    reference_representation(model_dir, participants=12, days=1, seed=5)
    path = reference_cache_path(model_dir, participants=12, days=1, seed=5)
    path.write_bytes(path.read_bytes()[:100])  # a disk that filled up mid-write, by another program
    embeddings, _ = reference_representation(model_dir, participants=12, days=1, seed=5)
    assert embeddings.shape[0] == 12
    with np.load(path) as kept:
        assert kept["embeddings"].shape[0] == 12
    assert not list(model_dir.glob("*.partial.npz"))
