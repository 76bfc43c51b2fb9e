"""The interface every agent backend implements, and the errors it may raise."""

from dataclasses import dataclass, field
from typing import Protocol


class BackendError(Exception):
    """The backend could not produce an answer; the message says why (stored with the failure)."""


class BackendTimeout(BackendError):
    pass


class BackendConfigError(BackendError):
    pass


@dataclass
class BackendAnswer:
    text: str  # markdown
    items: list[dict] = field(default_factory=list)  # structured recommendations with citations, when the backend has them
    metadata: dict = field(default_factory=dict)  # model, latency, tokens...


class AgentBackend(Protocol):
    name: str

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        """Answer from ``context`` (see healthagent/agent/context.py) within ``timeout_s`` or raise BackendError."""
        ...


class CompletionBackend(Protocol):
    """A language-model backend that also completes raw chat messages (the head search asks it for JSON specs)."""

    name: str

    def complete(self, messages: list[dict], *, json_schema: dict | None = None, timeout_s: float, seed: int | None = None,
                 temperature: float | None = None) -> str:
        """The assistant's reply to ``messages`` within ``timeout_s`` or BackendError; with ``json_schema``, the reply is
        constrained to it where the backend allows (it may still fail validation: callers parse it); ``seed`` (default the
        backend's) seeds sampling; ``temperature`` (default the backend's) overrides the variant's for this call."""
        ...
