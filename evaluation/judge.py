"""A language-model judge of a study's items (issue 22): the same rubric dimensions and item criteria the clinicians
grade, through an agent backend (the OpenAI-compatible HTTP backend for a hospital's own model behind vLLM, TGI or
Ollama; SmolLM2 locally for the demo and tests).

The prompt is a versioned template kept here (``PROMPT_VERSION``); the reply is constrained to a JSON schema where the
backend allows it, then parsed and checked: a reply that is not JSON, misses a dimension or a criterion, or gives a
score off the scale is a failure with its reason, never a score. Grades are kept apart from clinician ratings
(JudgeGrade), shown to researchers only, and never counted as ratings.
"""

import json
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from evaluation.assignment import freeze_answers
from evaluation.errors import EvaluationError
from evaluation.models import Criterion, Dimension, JudgeGrade, JudgeRun, Study, StudyItem
from healthagent.agent.prompt import context_as_text
from healthagent.models import Recommendation

PROMPT_VERSION = "judge-v2"
SYSTEM_PROMPT = (
    "You are an experienced clinician grading a health assistant's answer to a person, given the person's own "
    "wearable and clinical data. Grade only what the answer says, against the data shown. Reply with JSON only."
)
USER_TEMPLATE = """The person's data, as the assistant saw it:
{record}

The assistant's answer:
{answer}

Score each dimension with one whole number on its scale:
{dimensions}
{criteria_block}
Reply with JSON: {{"scores": {{{score_keys}}}{criteria_keys}}}"""
MAX_RAW = 4000


class JudgeError(Exception):
    """The judge's reply cannot be used; the message says why (stored with the failed grade)."""


def judged_dimensions(study: Study) -> list[Dimension]:
    return [dimension for dimension in study.rubric.dimensions.all() if dimension.is_scored]


def judge_messages(*, record: str, answer: str, dimensions: list[Dimension], criteria: list[Criterion]) -> list[dict]:
    """The chat messages of one item (template ``PROMPT_VERSION``)."""
    lines = []
    for dimension in dimensions:
        anchors = "; ".join(f"{point} = {text}" for point, text in dimension.choices if text)
        lines.append(
            f'- "{dimension.key}" ({dimension.label}): {dimension.question} '
            f"Scale {dimension.points[0]}-{dimension.points[-1]}{f' ({anchors})' if anchors else ''}."
        )
    criteria_block = ""
    if criteria:
        criteria_block = (
            "\nFor each criterion, give the probability, in percent (0-100), that the answer meets it:\n"
        ) + "\n".join(f'- "{criterion.position}": {criterion.text}' for criterion in criteria)
    user = USER_TEMPLATE.format(
        record=record,
        answer=answer,
        dimensions="\n".join(lines),
        criteria_block=criteria_block + ("\n" if criteria_block else ""),
        score_keys=", ".join(f'"{d.key}": <number>' for d in dimensions),
        criteria_keys=(
            ', "criteria": {' + ", ".join(f'"{c.position}": <0-100>' for c in criteria) + "}" if criteria else ""
        ),
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def judge_schema(dimensions: list[Dimension], criteria: list[Criterion]) -> dict[str, Any]:
    """The JSON schema the reply is decoded under (where the backend constrains decoding)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "scores": {
                "type": "object",
                "properties": {d.key: {"type": "integer", "enum": d.points} for d in dimensions},
                "required": [d.key for d in dimensions],
                "additionalProperties": False,
            }
        },
        "required": ["scores"],
        "additionalProperties": False,
    }
    if criteria:
        schema["properties"]["criteria"] = {
            "type": "object",
            "properties": {str(c.position): {"type": "integer", "minimum": 0, "maximum": 100} for c in criteria},
            "required": [str(c.position) for c in criteria],
            "additionalProperties": False,
        }
        schema["required"].append("criteria")
    return schema


def parse_grade(text: str, dimensions: list[Dimension], criteria: list[Criterion]) -> tuple[dict, dict, dict]:
    """The scores, criteria met and the judge's probabilities of a reply, checked against the rubric and the item's
    criteria; JudgeError says what is wrong. A criterion is given as a probability in percent (met at 50 or more: the
    probability is kept for the judge's calibration) or, from a server that ignored the schema, as true or false (no
    probability). A reply wrapped in prose or a code fence is read from its first ``{`` to its last ``}``."""
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise JudgeError("the reply is not JSON")
    try:
        reply = json.loads(text[start : end + 1])
    except ValueError as error:
        raise JudgeError(f"the reply is not valid JSON ({error.args[0].split(':')[0]})") from error
    if not isinstance(reply, dict) or not isinstance(reply.get("scores"), dict):
        raise JudgeError('the reply has no "scores" object')
    scores = {}
    for dimension in dimensions:
        value = reply["scores"].get(dimension.key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise JudgeError(f"no whole-number score for {dimension.key}")
        if int(value) not in dimension.points:
            raise JudgeError(f"{dimension.key} score {int(value)} is off the scale")
        scores[dimension.key] = int(value)
    met, probabilities = {}, {}
    if criteria:
        given = reply.get("criteria")
        if not isinstance(given, dict):
            raise JudgeError('the reply has no "criteria" object')
        for criterion in criteria:
            key, value = str(criterion.position), given.get(str(criterion.position))
            if isinstance(value, bool):
                met[key] = value
            elif isinstance(value, int | float) and 0 <= value <= 100:
                met[key], probabilities[key] = value >= 50, round(float(value) / 100, 4)
            else:
                raise JudgeError(f"criterion {criterion.position} is not graded as a probability (0-100)")
    return scores, met, probabilities


# A backend failing this many items in a row (down, or every reply cut short) stops the run: the rest are failed with
# that reason rather than each waiting for its time limit.
MAX_FAILURES_IN_A_ROW = 5


def judgeable_items(study: Study) -> list[StudyItem]:
    """The study's results items (not dropped): what the judge grades. Only once the study is open: its rubric and
    criteria are then fixed, and the answers it grades are the ones clinicians are shown."""
    if study.mode != Study.Mode.ABSOLUTE:
        raise EvaluationError("the judge grades absolute studies (one answer per item)")
    if study.status == Study.Status.DRAFT:
        raise EvaluationError("open the study first: the judge grades what clinicians are shown, once it is fixed")
    return list(
        study.items.filter(kind=StudyItem.Kind.RESULTS, dropped_at__isnull=True)
        .select_related("participant", "recommendation_a")
        .prefetch_related("criteria")
        .order_by("position")
    )


def study_judge(
    *,
    study: Study,
    complete: Callable[[list[dict], dict], str],
    backend: str,
    model: str,
    job_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    failure: Callable[[str, str], None] | None = None,
) -> JudgeRun:
    """Grade every judgeable item of ``study`` with ``complete(messages, json_schema) -> reply`` (a backend's
    completion, which raises on a transport failure): one JudgeGrade per item, graded or failed with its reason."""
    dimensions = judged_dimensions(study)
    items = judgeable_items(study)
    run = JudgeRun.objects.create(
        study=study, job_id=job_id, backend=backend, model=model, prompt_version=PROMPT_VERSION
    )
    in_a_row = 0
    for position, item in enumerate(items, start=1):
        grade = JudgeGrade(run=run, item=item)
        started = time.monotonic()
        try:
            if in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise JudgeError(f"not tried: the judge failed {in_a_row} items in a row")
            with transaction.atomic():  # as the assignment path does: one freeze of the item's answer
                item = StudyItem.objects.select_for_update().select_related("participant").get(pk=item.pk)
                try:
                    freeze_answers(item)  # the judge grades the answer clinicians are (or will be) shown
                except Recommendation.DoesNotExist as error:
                    raise JudgeError(
                        "the item's answer was never written (its generation failed or is pending)"
                    ) from error
            criteria = list(item.criteria.all())
            assert item.recommendation_a is not None  # frozen: the recommendation it was given
            messages = judge_messages(
                record=context_as_text(item.recommendation_a.context),
                answer=item.answer_a,
                dimensions=dimensions,
                criteria=criteria,
            )
            reply = complete(messages, judge_schema(dimensions, criteria))
            grade.raw = reply[:MAX_RAW]
            grade.scores, grade.criteria, grade.probabilities = parse_grade(reply, dimensions, criteria)
            grade.status = JudgeGrade.Status.GRADED
            in_a_row = 0
        except Exception as error:  # an unusable reply, a backend failure, an item without its answer
            in_a_row += 1
            grade.status, grade.reason = JudgeGrade.Status.FAILED, f"{type(error).__name__}: {error}"[:500]
            if failure is not None:
                failure(f"item {item.position + 1}", grade.reason)
        grade.seconds = time.monotonic() - started
        grade.save()
        if progress is not None:
            progress(position, len(items))
    with transaction.atomic():
        run.graded = run.grades.filter(status=JudgeGrade.Status.GRADED).count()
        run.failed = run.grades.filter(status=JudgeGrade.Status.FAILED).count()
        run.finished_at = timezone.now()
        run.save(update_fields=["graded", "failed", "finished_at"])
    return run
