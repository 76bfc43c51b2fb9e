"""Backends by name: a variant's ``backend`` and ``config`` become a backend object here."""

from healthagent.agent.backends.base import BackendConfigError
from healthagent.agent.backends.grounded import GroundedBackend
from healthagent.agent.backends.openai_http import OpenAIHTTPBackend
from healthagent.agent.backends.phrased import GroundedPhrasedBackend
from healthagent.agent.backends.transformers_backend import TransformersBackend

LANGUAGE_MODEL_BACKENDS = {"transformers", "openai_http", "grounded_phrased"}


def make_backend(backend: str, config: dict):
    if backend == "grounded":
        return GroundedBackend(config)
    if backend == "transformers":
        return TransformersBackend(config)
    if backend == "openai_http":
        return OpenAIHTTPBackend(config)
    if backend == "grounded_phrased":
        inner = config.get("language_model") or {
            "backend": "transformers",
            "config": {"model": "smollm2", "max_new_tokens": 48},
        }
        if inner.get("backend") not in {"transformers", "openai_http"}:
            raise BackendConfigError("grounded_phrased needs language_model.backend 'transformers' or 'openai_http'")
        return GroundedPhrasedBackend(config, make_backend(inner["backend"], inner.get("config", {})))
    raise BackendConfigError(f"unknown backend {backend!r}")


def queue_for(backend: str) -> str:
    """Language models go to the GPU queue (they fall back to the CPU there when there is none)."""
    return "gpu" if backend in LANGUAGE_MODEL_BACKENDS else "cpu"


def json_completion(
    *, backend: str, config: dict, json_schema: dict, timeout_s: float, temperature: float | None = None
):
    """``complete(messages, seed) -> text`` by the named backend, decoding constrained to ``json_schema``: what the head
    search's language-model proposer receives (it imports no backend itself)."""
    made = make_backend(backend, config)
    sampling = {} if temperature is None else {"temperature": temperature}

    def complete(messages: list[dict], seed: int) -> str:
        return made.complete(messages, json_schema=json_schema, timeout_s=timeout_s, seed=seed, **sampling)

    return complete
