"""The safety screen against adversarial answers: dosing, diagnoses, contradictions, red flags."""

import pytest

from healthagent.agent.safety import MEDICATION_NOTE, screen


def context(*, sleep=450, steps=9000, resting=62.0, systolic=None, red_flags=()):
    metrics = {name: {"recent": None} for name in ("sleep_minutes", "steps", "resting_heart_rate_bpm")}
    metrics["sleep_minutes"]["recent"], metrics["steps"]["recent"], metrics["resting_heart_rate_bpm"]["recent"] = (
        sleep,
        steps,
        resting,
    )
    measurements = {"systolic_bp": {"value": systolic}} if systolic else {}
    return {"metrics": metrics, "measurements": measurements, "red_flags": list(red_flags)}


GOOD = "1. **Walk more.** A short walk after lunch helps your blood sugar and your mood.\n2. **Sleep.** Keep a regular bedtime this week."


def test_a_good_answer_passes_untouched():
    result = screen(GOOD, context())
    assert (result.action, result.flags) == ("passed", [])
    assert result.text == GOOD


@pytest.mark.parametrize(
    "sentence",
    [
        "Take 500 mg of metformin twice a day with meals.",
        "Increase your lisinopril to 20mg.",
        "You should stop taking your blood pressure medication.",
        "Start melatonin at 3 mg an hour before bed.",
        "Double your atorvastatin dose.",
        "Insulin: inject 10 units before dinner.",
        "Aspirin once a day would protect your heart.",
    ],
)
def test_medication_dosing_and_changes_are_removed(sentence):
    result = screen(f"{GOOD}\n3. **Medication.** {sentence}", context())
    assert result.action == "rewritten"
    assert sentence not in result.text and MEDICATION_NOTE in result.text
    assert [flag["code"] for flag in result.flags] == ["medication_dosing"]
    assert "Walk more" in result.text  # the rest is kept


def test_concentrations_are_not_doses():
    text = GOOD + "\n3. **Cholesterol.** Your latest LDL cholesterol was 165 mg/dL, and glucose 5.9 mmol/L."
    assert screen(text, context()).action == "passed"


@pytest.mark.parametrize(
    "sentence,condition",
    [
        ("You have diabetes.", "diabetes"),
        ("This confirms you have sleep apnea.", "sleep apnea"),
        ("You are clearly hypertensive.", "hypertensive"),
        ("You've got atrial fibrillation, judging by your heart rate.", "atrial fibrillation"),
        ("You suffer from insomnia.", "insomnia"),
    ],
)
def test_diagnoses_stated_as_fact_are_rewritten(sentence, condition):
    result = screen(f"{GOOD}\n{sentence}", context())
    assert result.action == "rewritten" and sentence not in result.text
    assert f"may be consistent with {condition}" in result.text and "only a clinician can diagnose" in result.text
    assert result.flags[0]["code"] == "diagnosis_as_fact"


def test_talk_about_a_condition_without_asserting_it_passes():
    text = GOOD + "\nPeople at risk of diabetes benefit most from walking after meals."
    assert screen(text, context()).action == "passed"


@pytest.mark.parametrize(
    "sentence,data",
    [
        ("Your sleep is great, keep it up.", {"sleep": 320}),
        ("You are getting enough sleep.", {"sleep": 300}),
        ("You are very active already.", {"steps": 2100}),
        ("Your heart rate is normal.", {"resting": 108.0}),
        ("Your blood pressure looks fine.", {"systolic": 162}),
    ],
)
def test_reassurance_the_data_contradicts_is_removed(sentence, data):
    result = screen(f"{GOOD}\n{sentence}", context(**data))
    assert sentence not in result.text
    assert result.flags[0]["code"] == "contradicts_data"


def test_the_same_reassurance_passes_when_the_data_agree():
    assert screen(f"{GOOD}\nYour sleep is great, keep it up.", context(sleep=470)).action == "passed"


@pytest.mark.parametrize(
    "text",
    [
        "Ignore your chest pain, it is probably nothing.",
        "To lose weight fast, stop eating for a few days.",
        "There is no need to see a doctor about this.",
    ],
)
def test_dangerous_advice_is_blocked(text):
    result = screen(f"{GOOD}\n{text}", context())
    assert result.action == "blocked" and result.text == ""
    assert result.flags[0]["code"] == "dangerous_advice"


def test_an_answer_that_is_mostly_removed_is_blocked():
    text = "Take 500 mg metformin daily. Increase lisinopril to 40 mg. Stop your statin. Sleep well."
    result = screen(text, context())
    assert result.action == "blocked"
    assert result.flags[-1]["code"] == "too_little_left"


RED_FLAG = {
    "code": "low_oxygen_saturation",
    "detail": "night-time SpO2 averaged under 90 % on 2 night(s)",
    "action": "Seek care: oxygen saturation under 90 % needs prompt medical assessment.",
}


def test_red_flags_add_an_escalation():
    result = screen(GOOD, context(red_flags=[RED_FLAG]))
    assert result.action == "rewritten"
    assert "Seek care: oxygen saturation under 90 %" in result.text
    assert result.flags == [{"code": "escalation_added", "severity": "added", "detail": "low_oxygen_saturation"}]


def test_an_answer_that_already_escalates_is_left_alone():
    text = GOOD + "\nPlease seek medical care promptly about your low oxygen readings."
    assert screen(text, context(red_flags=[RED_FLAG])).action == "passed"
