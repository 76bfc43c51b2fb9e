"""Grounded recommendations with an opening written by a language model.

The grounded backend decides what to recommend and cites the numbers; the language model only
writes a short, warm opening sentence. That keeps every claim grounded while the tone varies,
which is what a study comparing "grounded" with "grounded + LLM phrasing" wants to isolate.
"""

import time

from healthagent.agent.backends.base import BackendAnswer, BackendError, first_sentence
from healthagent.agent.backends.grounded import grounded_items, render

OPENING_INSTRUCTION = (
    "Write one short, warm opening sentence (at most 30 words) introducing these recommendations. "
    "Do not give advice or numbers of your own.\n\nRecommendations:\n"
)


class GroundedPhrasedBackend:
    name = "grounded_phrased"

    def __init__(self, config: dict, language_model):
        self.config = config
        self.language_model = language_model  # a backend whose generate() takes a context

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        started = time.perf_counter()
        items = grounded_items(context)
        titles = "\n".join(f"- {item['title']}" for item in items) or "- keep up the current habits"
        prompt_context = {**context, "question": OPENING_INSTRUCTION + titles}
        opening = self.language_model.generate(prompt_context, timeout_s=timeout_s)
        # Only a finished sentence opens the answer: one cut off by the token limit makes the generation fail.
        sentence = first_sentence(opening.text)
        if sentence is None or len(sentence) > 300:
            ended = "reached the token limit" if opening.metadata.get("finish_reason") == "length" else "ended"
            raise BackendError(
                f"truncated: the language model's opening {ended} before finishing a sentence ({opening.text[:80]!r})"
            )
        return BackendAnswer(
            text=render(context, items, opening=sentence),
            items=items,
            metadata={
                "backend": self.name,
                "phrasing": opening.metadata,
                "latency_s": round(time.perf_counter() - started, 3),
            },
        )
