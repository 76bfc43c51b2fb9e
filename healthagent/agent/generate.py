"""Generating recommendations: context -> backend -> output checks -> safety screen -> one stored row.

A generation that yields nothing usable (an error, a time-out, empty, over-long, unreadable or
truncated text) is stored as *failed* with its reason, never as an answer; one the safety screen refuses is
stored as *blocked*. Generating again for the same participant, variant and question replaces
that row, so there are never duplicates.
"""

import time
import unicodedata
from collections.abc import Callable

from django.db import transaction

from healthagent.agent.backends.base import BackendError, ends_a_sentence
from healthagent.agent.backends.registry import make_backend
from healthagent.agent.context import participant_context
from healthagent.agent.safety import screen
from healthagent.models import AgentVariant, Cohort, Participant, Recommendation

MAX_ANSWER_CHARS = 6000
MIN_ANSWER_CHARS = 40
DEFAULT_TIMEOUT_S = 120.0


class AgentError(Exception):
    pass


def check_answer_text(text: str, *, finish_reason: str | None = None) -> str | None:
    """Why ``text`` is not a usable answer, or None when it is. ``finish_reason`` is the backend's
    ("length" when its token budget ran out): an answer cut off mid-sentence is never shown."""
    if not text or len(text.strip()) < MIN_ANSWER_CHARS:
        return f"the backend returned no usable text ({len(text.strip())} characters)"
    if len(text) > MAX_ANSWER_CHARS:
        return f"the answer is over-long ({len(text)} characters; the limit is {MAX_ANSWER_CHARS})"
    if "\ufffd" in text or any(unicodedata.category(ch) in {"Cc", "Co", "Cs"} and ch not in "\n\t\r" for ch in text):
        return "the answer contains invalid or control characters"
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return "the answer is not readable text (too few letters)"
    words = text.split()
    if len(words) >= 20 and len(set(words)) < 0.25 * len(words):
        return "the answer repeats itself (degenerate output)"
    if finish_reason == "length" and not ends_a_sentence(text):
        return "truncated: the answer reached the token limit in the middle of a sentence"
    return None


def recommendation_generate(
    *,
    participant: Participant,
    variant: AgentVariant,
    question: str = "",
    backend=None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Recommendation:
    """Generate and store one recommendation; returns the stored row whatever its status."""
    context = participant_context(participant=participant, question=question)
    started = time.perf_counter()
    status, text, raw_text, items, flags, error, metadata = Recommendation.Status.FAILED, "", "", [], [], "", {}
    try:
        backend = backend or make_backend(variant.backend, variant.config)
        answer = backend.generate(context, timeout_s=timeout_s)
        raw_text, items, metadata = answer.text, answer.items, answer.metadata
        problem = check_answer_text(answer.text, finish_reason=metadata.get("finish_reason"))
        if problem:
            error = problem
        else:
            result = screen(answer.text, context)
            flags = result.flags
            if result.action == "blocked":
                status, error = (
                    Recommendation.Status.BLOCKED,
                    "; ".join(f["detail"] for f in flags if f["severity"] == "block"),
                )
            else:
                status, text = Recommendation.Status.SUCCEEDED, result.text
    except BackendError as backend_error:
        error = str(backend_error)
    metadata = {**metadata, "total_s": round(time.perf_counter() - started, 3)}
    with transaction.atomic():
        recommendation, _ = Recommendation.objects.update_or_create(
            participant=participant,
            variant=variant,
            question=question.strip(),
            # PostgreSQL text cannot hold NUL: a backend's raw bytes are kept visibly replaced instead.
            defaults={
                "status": status,
                "text": text,
                "raw_text": raw_text[: MAX_ANSWER_CHARS * 2].replace("\x00", "\ufffd"),
                "items": items if status == "succeeded" else [],
                "context": context,
                "safety_flags": flags,
                "error": error,
                "backend_metadata": metadata,
            },
        )
    return recommendation


def cohort_generate(
    *,
    cohort: Cohort,
    variants: list[AgentVariant],
    regenerate: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    participant_ids: list[int] | None = None,
) -> dict:
    """Recommendations for every participant × variant (or only the cohort's ``participant_ids``: a study's
    sample, when a language model takes a quarter of a minute an answer); existing successful ones are kept
    unless ``regenerate``.

    Returns counts per status. One backend object is built per variant and reused.
    """
    chosen = cohort.participants.order_by("pk")
    if participant_ids is not None:
        chosen = chosen.filter(pk__in=participant_ids)
    participants = list(chosen)
    done = set()
    if not regenerate:
        done = set(
            Recommendation.objects.filter(
                participant__cohort=cohort, variant__in=variants, question="", status="succeeded"
            ).values_list("participant_id", "variant_id")
        )
    counts = {"succeeded": 0, "failed": 0, "blocked": 0, "kept": 0}
    total = len(participants) * len(variants)
    position = 0
    for variant in variants:
        try:
            backend = make_backend(variant.backend, variant.config)
        except BackendError as error:
            raise AgentError(f"variant {variant.name!r}: {error}") from error
        for participant in participants:
            position += 1
            if (participant.pk, variant.pk) in done:
                counts["kept"] += 1
            else:
                recommendation = recommendation_generate(
                    participant=participant, variant=variant, backend=backend, timeout_s=timeout_s
                )
                counts[recommendation.status] += 1
            if progress:
                progress(position, total, f"{variant.name}: {position} of {total}")
    return counts
