"""Generation: bad backend output is a failure with its reason, never an answer; no duplicates."""

import pytest
from django.core.management import CommandError, call_command

from healthagent.agent.backends.base import BackendAnswer, BackendTimeout
from healthagent.agent.generate import cohort_generate, recommendation_generate
from healthagent.models import AgentVariant, Recommendation

pytestmark = pytest.mark.django_db


class ScriptedBackend:
    name = "scripted"

    def __init__(self, text=None, error=None, finish_reason="stop"):
        self.text, self.error, self.finish_reason = text, error, finish_reason

    def generate(self, context, *, timeout_s):
        if self.error:
            raise self.error
        return BackendAnswer(text=self.text, metadata={"backend": "scripted", "finish_reason": self.finish_reason})


@pytest.fixture
def participant(tiny_cohort):
    return tiny_cohort.participants.order_by("pk").first()


@pytest.fixture
def variant():
    return AgentVariant.objects.create(name="scripted", backend="openai_http", config={})


@pytest.mark.parametrize(
    "backend,reason",
    [
        (ScriptedBackend(text=""), "no usable text"),
        (ScriptedBackend(text="ok"), "no usable text"),
        (ScriptedBackend(text="Walk more each day please. " * 400), "over-long"),
        (ScriptedBackend(text="%%%% 1234 5678 #### !!!! ???? 9999 0000 @@@@ &&&& ****"), "not readable text"),
        (
            ScriptedBackend(text="Walk more. \x00\x01 Sleep more and drink water every single day."),
            "invalid or control characters",
        ),
        (ScriptedBackend(text=" ".join(["sleep"] * 60)), "repeats itself"),
        (
            ScriptedBackend(error=BackendTimeout("generation was stopped at the 120 s limit after 12 tokens")),
            "stopped at the 120 s limit",
        ),
        (
            ScriptedBackend(
                text="1. **Walk after meals.** A short walk after dinner steadies your blood sugar and",
                finish_reason="length",
            ),
            "truncated",
        ),
        (
            ScriptedBackend(
                text="1. **Walk after meals.** A short walk after dinner steadies your blood sugar.\n2.",
                finish_reason="length",
            ),
            "truncated",
        ),
    ],
)
def test_bad_backend_output_is_stored_as_a_failure_with_its_reason(participant, variant, backend, reason):
    recommendation = recommendation_generate(participant=participant, variant=variant, backend=backend)
    assert recommendation.status == "failed" and reason in recommendation.error
    assert recommendation.text == "" and recommendation.items == []
    assert recommendation.context["participant"]["pseudonym"] == participant.pseudonym  # what it saw is kept


@pytest.mark.parametrize(
    "text,finish_reason",
    [
        (
            "1. **Walk after meals.** A short walk after dinner steadies blood sugar and helps you sleep.",
            "length",
        ),  # ended a sentence
        (
            "1. **Walk after meals.** A short walk after dinner steadies blood sugar and helps you sleep",
            "stop",
        ),  # the model chose to end
    ],
)
def test_an_answer_is_truncated_only_when_the_token_limit_cut_a_sentence(participant, variant, text, finish_reason):
    recommendation = recommendation_generate(
        participant=participant, variant=variant, backend=ScriptedBackend(text=text, finish_reason=finish_reason)
    )
    assert recommendation.status == "succeeded" and recommendation.text == text


def test_a_blocked_answer_is_not_stored_as_an_answer(participant, variant):
    backend = ScriptedBackend(text="You should stop eating for a few days to reset your metabolism and lose weight.")
    recommendation = recommendation_generate(participant=participant, variant=variant, backend=backend)
    assert recommendation.status == "blocked" and recommendation.text == ""
    assert recommendation.safety_flags[0]["code"] == "dangerous_advice"
    assert "stop eating" in recommendation.raw_text  # kept for review, never shown as an answer


def test_regenerating_replaces_instead_of_duplicating(participant, variant):
    recommendation_generate(participant=participant, variant=variant, backend=ScriptedBackend(text=""))
    good = "1. **Walk after meals.** A short walk after dinner steadies blood sugar and helps you sleep."
    recommendation = recommendation_generate(
        participant=participant, variant=variant, backend=ScriptedBackend(text=good)
    )
    assert Recommendation.objects.filter(participant=participant, variant=variant).count() == 1
    assert recommendation.status == "succeeded" and recommendation.text == good and recommendation.error == ""


def test_cohort_generation_keeps_what_succeeded(tiny_cohort):
    grounded = AgentVariant.objects.get(name="grounded agent")
    assert cohort_generate(cohort=tiny_cohort, variants=[grounded]) == {
        "succeeded": 3,
        "failed": 0,
        "blocked": 0,
        "kept": 0,
    }
    assert cohort_generate(cohort=tiny_cohort, variants=[grounded]) == {
        "succeeded": 0,
        "failed": 0,
        "blocked": 0,
        "kept": 3,
    }
    assert Recommendation.objects.count() == 3


def test_cohort_generation_can_be_limited_to_some_participants(tiny_cohort):
    grounded = AgentVariant.objects.get(name="grounded agent")
    chosen = list(tiny_cohort.participants.order_by("pk").values_list("pk", flat=True)[:2])
    assert cohort_generate(cohort=tiny_cohort, variants=[grounded], participant_ids=chosen)["succeeded"] == 2
    assert set(Recommendation.objects.values_list("participant_id", flat=True)) == set(chosen)


def test_the_command_generates_and_refuses_unknown_names(tiny_cohort, capsys):
    call_command("generate_recommendations", "--cohort", tiny_cohort.name, "--variant", "grounded agent")
    assert "'succeeded': 3" in capsys.readouterr().out
    with pytest.raises(CommandError, match="Unknown variant"):
        call_command("generate_recommendations", "--cohort", tiny_cohort.name, "--variant", "nope")
    with pytest.raises(CommandError, match="no cohort named"):
        call_command("generate_recommendations", "--cohort", "nope")


def test_the_command_can_queue_the_work_as_a_job(tiny_cohort, capsys):
    from modeling.models import Job

    call_command("generate_recommendations", "--cohort", tiny_cohort.name, "--variant", "LLM only", "--queue")
    job = Job.objects.get()
    assert (
        job.kind == "generate_recommendations"
        and job.queue == "gpu"
        and f"Queued job #{job.pk}" in capsys.readouterr().out
    )


def test_the_default_variants_exist():
    assert set(AgentVariant.objects.values_list("name", "backend")) >= {
        ("grounded agent", "grounded"),
        ("LLM only", "transformers"),
        ("grounded + LLM phrasing", "grounded_phrased"),
    }


def test_the_default_language_model_variants_decode_for_two_busy_cores():
    """One torch thread (two fought a training run for the cores: 0.2 tokens/s), a repetition penalty, and a
    budget the answer fits in: a stop before a fourth recommendation, or at a paragraph break after 60 tokens."""
    from healthagent.agent.backends.registry import make_backend

    llm_only = make_backend("transformers", AgentVariant.objects.get(name="LLM only").config)
    assert (llm_only.torch_threads, llm_only.repetition_penalty, llm_only.stop, llm_only.max_new_tokens) == (
        1,
        1.1,
        ["\n4."],
        160,
    )
    assert llm_only.paragraph_stop_after_tokens == 60
    phrased = make_backend(
        "grounded_phrased", AgentVariant.objects.get(name="grounded + LLM phrasing").config
    ).language_model
    assert (phrased.torch_threads, phrased.repetition_penalty, phrased.max_new_tokens) == (1, 1.1, 48)


def test_researchers_see_each_variant_with_its_context_and_flags(client, researcher, participant, variant):
    recommendation_generate(
        participant=participant,
        variant=variant,
        backend=ScriptedBackend(
            text="Take 20 mg of atorvastatin. " + "Walk more after meals and keep a steady bedtime every night."
        ),
    )
    client.force_login(researcher)
    page = client.get(f"/cohorts/participants/{participant.pk}/").content.decode()
    assert "scripted" in page and "medication_dosing" in page and "What the agent saw" in page
    assert "Walk more after meals" in page


def test_answers_are_rendered_without_markup_injection(client, researcher, participant, variant):
    text = "1. **Sleep.** Keep a regular bedtime <script>alert('x')</script> and <img src=x onerror=alert(1)> rest well each night."
    recommendation_generate(participant=participant, variant=variant, backend=ScriptedBackend(text=text))
    client.force_login(researcher)
    answer = (
        client.get(f"/cohorts/participants/{participant.pk}/")
        .content.decode()
        .split('<div class="answer">')[1]
        .split("</div>")[0]
    )
    assert "<script>" not in answer and "onerror" not in answer and "<strong>Sleep.</strong>" in answer
