"""Training one head spec on frozen token grids and scoring it on other participants.

Windows carry their participant's label; a participant's prediction is the mean of their windows'
predictions; the score is AUROC for classification and Pearson r for regression (higher is better
for both, so a search can rank specs of every task alike). Deterministic for a seed.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from modeling.ml.common.metrics import auroc
from modeling.ml.heads.model import build_head
from modeling.ml.heads.spec import HeadSpec


@dataclass
class TokenWindows:
    tokens: torch.Tensor  # (windows, patches, dim) frozen encodings, zeros where absent
    present: torch.Tensor  # (windows, patches)
    owner: np.ndarray  # (windows,) participant index
    grid: tuple[int, int]  # (channel groups, time patches)


@dataclass
class Fitted:
    score: float  # AUROC or Pearson r on the scored participants (NaN when undefined)
    predictions: np.ndarray  # per scored participant: class probabilities or values
    trainable_parameters: int


def validation_score(kind: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    try:
        if kind == "regression":
            return float(np.corrcoef(truth, predicted)[0, 1])
    except ValueError:  # fewer than two participants scored
        return float("nan")
    value = auroc(truth, predicted)
    return float("nan") if value is None else value  # None: one class among the scored participants


@dataclass
class TrainedHead:
    module: torch.nn.Module
    kind: str
    centre: float = 0.0  # regression: targets were (value - centre) / scale
    scale: float = 1.0


def person_rows(data: TokenWindows, people: np.ndarray) -> np.ndarray:
    """The windows (with data) of ``people`` in their order; a person listed twice (a bootstrap resample) counts twice."""
    usable = data.present.any(dim=1).numpy()
    return np.concatenate(
        [np.flatnonzero((data.owner == person) & usable) for person in people] or [np.zeros(0, dtype=int)]
    )


def fit_head(
    spec: HeadSpec,
    data: TokenWindows,
    labels: np.ndarray,
    kind: str,
    train_people: np.ndarray,
    *,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
    classes: int | None = None,
) -> TrainedHead:
    """Train ``spec`` on the windows of ``train_people`` (each window carries its person's label)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rows = person_rows(data, np.asarray(train_people))
    window_labels = labels[data.owner[rows]]
    centre, scale = 0.0, 1.0
    if kind == "regression":
        centre, scale = float(window_labels.mean()), float(window_labels.std()) or 1.0
        targets = torch.tensor((window_labels - centre) / scale, dtype=torch.float32)
        outputs, weight = 1, None
    else:
        outputs = classes or int(labels.max()) + 1
        counts = np.bincount(window_labels, minlength=outputs).astype(np.float32)
        balanced = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / outputs, 0.0)
        weight = torch.tensor(
            balanced if spec.training.class_weighting == "balanced" else (counts > 0).astype(np.float32)
        )
        targets = torch.tensor(window_labels, dtype=torch.long)
    head = build_head(spec, dim=data.tokens.shape[-1], outputs=outputs, grid=data.grid).to(device)
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=spec.training.learning_rate, weight_decay=spec.training.weight_decay
    )
    head.train()
    for _ in range(spec.training.epochs):
        for batch in torch.split(torch.randperm(len(rows), generator=generator), batch_size):
            if len(batch) < 2:  # batch normalization needs two windows
                continue
            index = torch.as_tensor(rows)[batch]
            output = head(data.tokens[index].to(device), data.present[index].to(device))
            target = targets[batch].to(device)
            loss = (
                F.mse_loss(output[:, 0], target)
                if kind == "regression"
                else F.cross_entropy(output, target, weight=None if weight is None else weight.to(device))
            )
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
    head.eval()
    return TrainedHead(head, kind, centre, scale)


def predict_windows(
    trained: TrainedHead, tokens: torch.Tensor, present: torch.Tensor, device: str = "cpu"
) -> np.ndarray | np.float64:
    """One person's prediction from their windows (windows, patches, dim): a value, or class probabilities, averaged over
    the windows with data (a day the device was not worn says nothing; with none worn, every window's prior output)."""
    worn = present.any(dim=1)
    if worn.any():
        tokens, present = tokens[worn], present[worn]
    with torch.no_grad():
        output = trained.module(tokens.to(device), present.to(device))
    if trained.kind == "regression":
        return np.float64(float(output[:, 0].mean()) * trained.scale + trained.centre)
    probabilities: np.ndarray = output.softmax(dim=-1).mean(dim=0).cpu().numpy()
    return probabilities


def predict_people(trained: TrainedHead, data: TokenWindows, people: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Per person of ``people``: a value (regression) or class probabilities."""
    predictions = []
    for person in people:
        windows = np.flatnonzero(data.owner == person)
        predictions.append(predict_windows(trained, data.tokens[windows], data.present[windows], device))
    return np.array(predictions)


def fit_and_score(
    spec: HeadSpec,
    data: TokenWindows,
    labels: np.ndarray,
    kind: str,
    train_people: np.ndarray,
    scored_people: np.ndarray,
    *,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
) -> Fitted:
    """Train ``spec`` on the windows of ``train_people``; predict and score ``scored_people``."""
    trained = fit_head(spec, data, labels, kind, train_people, seed=seed, batch_size=batch_size, device=device)
    predictions = predict_people(trained, data, scored_people, device)
    return Fitted(
        validation_score(kind, labels[scored_people], predictions),
        predictions,
        sum(p.numel() for p in trained.module.parameters() if p.requires_grad),
    )
