"""The interface every agent backend implements, and the errors it may raise."""

import re
from dataclasses import dataclass, field
from typing import Protocol

# What may close a sentence after its final mark: markdown emphasis, quotes, brackets.
_CLOSING = "*_\"')]”’"
_SENTENCE_END = re.compile(r"[.!?…][" + re.escape(_CLOSING) + r"]*(?=\s|$)")
_ENDS_A_SENTENCE = re.compile(r"[.!?…][" + re.escape(_CLOSING) + r"]*\s*$")
_DANGLING_LIST_NUMBER = re.compile(r"(^|\n)\s*\d+[.)]\s*$")


def ends_a_sentence(text: str) -> bool:
    """Whether ``text`` ends with a finished sentence (``Walk more.``, ``**Sleep at 11.**``), not mid-way."""
    return bool(_ENDS_A_SENTENCE.search(text)) and not _DANGLING_LIST_NUMBER.search(text)


def first_sentence(text: str, *, min_words: int = 3) -> str | None:
    """The first finished sentence of ``text``'s first line with at least ``min_words`` words (so a list
    number or "Dr." does not end it), or None when that line never finishes one."""
    line = text.strip().split("\n")[0]
    for match in _SENTENCE_END.finditer(line):
        if len(line[: match.end()].split()) >= min_words:
            return line[: match.end()].strip()
    return None


class BackendError(Exception):
    """The backend could not produce an answer; the message says why (stored with the failure)."""


class BackendTimeout(BackendError):
    pass


class BackendConfigError(BackendError):
    pass


@dataclass
class BackendAnswer:
    text: str  # markdown
    items: list[dict] = field(
        default_factory=list
    )  # structured recommendations with citations, when the backend has them
    metadata: dict = field(default_factory=dict)  # model, latency, tokens...


class AgentBackend(Protocol):
    name: str

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        """Answer from ``context`` (see healthagent/agent/context.py) within ``timeout_s`` or raise BackendError."""
        ...


class CompletionBackend(Protocol):
    """A language-model backend that also completes raw chat messages (the head search asks it for JSON specs)."""

    name: str

    def complete(
        self,
        messages: list[dict],
        *,
        json_schema: dict | None = None,
        timeout_s: float,
        seed: int | None = None,
        temperature: float | None = None,
    ) -> str:
        """The assistant's reply to ``messages`` within ``timeout_s`` or BackendError; with ``json_schema``, the reply is
        constrained to it where the backend allows (it may still fail validation: callers parse it); ``seed`` (default the
        backend's) seeds sampling; ``temperature`` (default the backend's) overrides the variant's for this call."""
        ...
