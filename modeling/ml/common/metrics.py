"""The library's one AUROC, and the table cell every family writes a metric with its interval in."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """AUROC of ``scores`` against the class indices ``truth`` (0 .. classes - 1), or None where it is undefined (one
    class among ``truth``). ``scores`` is one score per row (binary), (rows, 2) class probabilities (binary: the second
    column) or (rows, classes) class probabilities (one-vs-rest, macro average)."""
    truth, scores = np.asarray(truth), np.asarray(scores)
    if scores.ndim == 2 and scores.shape[1] == 2:
        scores = scores[:, 1]
    if len(np.unique(truth)) < 2:
        return None
    try:
        if scores.ndim == 1:
            return float(roc_auc_score(truth, scores))
        return float(
            roc_auc_score(truth, scores, multi_class="ovr", average="macro", labels=list(range(scores.shape[1])))
        )
    except ValueError:  # one-vs-rest with a class that no row holds
        return None


def interval_cell(result: Sequence[float | None] | None) -> str:
    """``(estimate, low, high)`` as "0.71 (0.65–0.77)"; "—" where there is none."""
    if not result or result[0] is None or np.isnan(result[0]):
        return "—"
    return f"{result[0]:.2f} ({result[1]:.2f}–{result[2]:.2f})"
