"""Zero-shot activity recognition: each activity kind's prompts embedded by the text tower, each day scored against them.

The prompts are worded like the semantic captions and averaged per kind (CLIP's prompt ensembling); a day's
probabilities over the kinds are the softmax of its similarities times the model's learned logit scale.
"""

import numpy as np
import torch
from tokenizers import Tokenizer

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.sensorlm.captions import activity_words
from modeling.ml.sensorlm.model import SensorLMModel
from modeling.ml.sensorlm.train import embed_texts

TEMPLATES = (
    "Activities: a {name}.",
    "Activities: a 30-minute {name} in the morning.",
    "Activities: a 45-minute {name} in the evening.",
    "a day with a {name}.",
)


def class_text_embeddings(model: SensorLMModel, tokenizer: Tokenizer, names: list[str]) -> torch.Tensor:
    """(classes, embed_dim): each class's prompt embeddings averaged over the templates, renormalized."""
    texts = [template.format(name=activity_words(name)) for name in names for template in TEMPLATES]
    embedded = embed_texts(model, tokenizer, texts).reshape(len(names), len(TEMPLATES), -1).mean(dim=1)
    return torch.nn.functional.normalize(embedded, dim=-1)


@torch.no_grad()
def kind_probabilities(
    model: SensorLMModel, tokenizer: Tokenizer, embeddings: np.ndarray, classes: torch.Tensor | None = None
) -> np.ndarray:
    """(days, kinds) each day's probability of each activity kind (in the order of ``ACTIVITY_NAMES``), from its unit
    sensor embedding ``embeddings`` (days, embed_dim); ``classes``: :func:`class_text_embeddings` of ``ACTIVITY_NAMES``
    if already computed."""
    if classes is None:
        classes = class_text_embeddings(model, tokenizer, list(ACTIVITY_NAMES))
    similarity = torch.as_tensor(embeddings, dtype=torch.float32) @ classes.T
    probabilities: np.ndarray = torch.softmax(model.logit_scale.exp().clamp(max=100).cpu() * similarity, dim=1).numpy()
    return probabilities
