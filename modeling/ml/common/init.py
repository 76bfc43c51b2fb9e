"""Weight initialization shared by the encoder families (the foundation model and the sensor-language model)."""

from torch import nn


def xavier_init(module: nn.Module, *, embedding_std: float | None = None) -> None:
    """Xavier-uniform linear weights with zero biases, unit LayerNorms, and (with ``embedding_std``) normal embeddings;
    used as ``model.apply(...)``."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding) and embedding_std is not None:
        nn.init.normal_(module.weight, std=embedding_std)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
