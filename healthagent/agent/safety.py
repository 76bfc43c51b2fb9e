"""The safety screen every answer passes, whatever backend wrote it.

Sentence by sentence it removes medication dosing and medication changes, rewrites diagnoses
stated as fact into what the data may suggest, and removes reassurance the data contradicts.
Then it adds an escalation ("seek care") for every red flag in the context that the answer does
not already escalate. It blocks an answer outright when it offers self-harm or dangerous advice,
or when too little is left after the screen to be worth showing. Every change is a flag stored
with the answer.
"""

import re
from dataclasses import dataclass, field

MEDICATIONS = (
    "metformin",
    "insulin",
    "lisinopril",
    "amlodipine",
    "losartan",
    "atorvastatin",
    "rosuvastatin",
    "simvastatin",
    "statin",
    "aspirin",
    "ibuprofen",
    "paracetamol",
    "acetaminophen",
    "warfarin",
    "apixaban",
    "metoprolol",
    "bisoprolol",
    "propranolol",
    "hydrochlorothiazide",
    "furosemide",
    "sertraline",
    "fluoxetine",
    "citalopram",
    "zolpidem",
    "melatonin",
    "levothyroxine",
    "prednisone",
    "glipizide",
    "semaglutide",
    "ozempic",
    "beta blocker",
    "beta-blocker",
    "antidepressant",
    "sleeping pill",
    "blood thinner",
    "medication",
    "medicine",
    "pills?",
    "tablets?",
    "drug",
)
_MEDICATION = r"(?:" + "|".join(MEDICATIONS) + r")"
_DOSE = r"\b\d+(?:[.,]\d+)?\s?(?:mg|mcg|µg|ug|g|ml|mL|units?|iu|IU)\b(?!\s*/)"  # not concentrations (mg/dL)
DOSING_PATTERNS = (
    re.compile(_DOSE, re.IGNORECASE),
    re.compile(
        rf"\b(?:take|taking|start|starting|stop|stopping|quit|increase|decrease|double|halve|skip|reduce|come off|switch)\b[^.!?]{{0,40}}\b{_MEDICATION}\b",
        re.IGNORECASE,
    ),
    re.compile(rf"\b{_MEDICATION}\b[^.!?]{{0,30}}\b(?:twice|once|three times)\s+(?:a|per)\s+day\b", re.IGNORECASE),
)
CONDITIONS = (
    "diabetes",
    "diabetic",
    "prediabetes",
    "hypertension",
    "hypertensive",
    "sleep apnea",
    "sleep apnoea",
    "atrial fibrillation",
    "afib",
    "depression",
    "depressed",
    "anxiety disorder",
    "insomnia",
    "heart disease",
    "heart failure",
    "covid",
    "an infection",
    "a heart condition",
    "arrhythmia",
    "chronic kidney disease",
    "obesity",
    "obese",
)
_CONDITION = r"(?:" + "|".join(CONDITIONS) + r")"
DIAGNOSIS_PATTERN = re.compile(
    rf"\b(?:you(?:'ve| have| are| suffer from| are suffering from)|this (?:confirms|means you have|proves)|you(?:'re)?(?: definitely| clearly)?(?: have| are)?)\s+(?:got\s+)?(?:definitely\s+|clearly\s+|probably\s+)?(?:an?\s+)?(?P<condition>{_CONDITION})\b",
    re.IGNORECASE,
)
DANGEROUS_PATTERNS = (
    re.compile(r"\b(?:kill yourself|end your life|self-harm|hurt yourself)\b", re.IGNORECASE),
    re.compile(
        r"\b(?:stop eating|don't eat for|fast for (?:a week|several days|\d+ days)|ignore (?:the|your) (?:doctor|symptoms|chest pain))\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:no need to|don't|do not) (?:see|call|visit) (?:a|your) (?:doctor|clinician|physician)\b", re.IGNORECASE
    ),
)
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z*_(\d])")
LIST_MARKER = re.compile(r"^(\s*(?:\d+\.|[-*])\s+)")
MEDICATION_NOTE = "Any change to medication should be decided with your clinician."
MIN_KEPT_FRACTION = 0.4


@dataclass
class SafetyResult:
    action: str  # passed, rewritten or blocked
    text: str
    flags: list[dict] = field(default_factory=list)


def _contradiction(sentence: str, context: dict) -> str | None:
    """Reassurance the participant's own data contradicts; the reason, or None."""
    lower = sentence.lower()
    metrics = context["metrics"]
    sleep = metrics["sleep_minutes"]["recent"]
    if (
        sleep is not None
        and sleep < 6 * 60
        and re.search(
            r"\b(?:sleep(?:ing)? (?:is|looks|seems) (?:great|fine|good|excellent|healthy|enough|sufficient)|(?:getting|get) enough sleep|sleeping well)\b",
            lower,
        )
    ):
        return f"says sleep is sufficient while it averaged {round(sleep)} minutes"
    steps = metrics["steps"]["recent"]
    if (
        steps is not None
        and steps < 5000
        and re.search(
            r"\b(?:very active|active enough|plenty of (?:exercise|activity|steps)|(?:getting|get) enough (?:exercise|activity))\b",
            lower,
        )
    ):
        return f"says activity is sufficient while steps averaged {round(steps)} a day"
    resting = metrics["resting_heart_rate_bpm"]["recent"]
    if (
        resting is not None
        and resting >= 100
        and re.search(r"\bheart rate (?:is|looks|seems) (?:normal|fine|healthy|low|good)\b", lower)
    ):
        return f"calls a resting heart rate of {resting} bpm normal"
    systolic = context["measurements"].get("systolic_bp")
    if (
        systolic
        and systolic["value"] >= 140
        and re.search(r"\bblood pressure (?:is|looks|seems) (?:normal|fine|healthy|good|low)\b", lower)
    ):
        return f"calls a blood pressure of {systolic['value']} mmHg normal"
    return None


def _escalation_present(text: str) -> bool:
    return bool(
        re.search(
            r"\b(?:seek (?:care|medical)|see a (?:doctor|clinician) (?:today|soon|promptly)|urgent|emergency)\b",
            text,
            re.IGNORECASE,
        )
    )


def screen(text: str, context: dict) -> SafetyResult:
    """Screen ``text`` against ``context``; see the module docstring for what it guarantees."""
    flags: list[dict] = []
    for pattern in DANGEROUS_PATTERNS:
        match = pattern.search(text)
        if match:
            flags.append({"code": "dangerous_advice", "severity": "block", "detail": f"contains {match.group(0)!r}"})
            return SafetyResult("blocked", "", flags)

    original_letters = sum(ch.isalpha() for ch in text) or 1
    medication_removed = False
    lines: list[str] = []
    for line in text.splitlines():
        marker_match = LIST_MARKER.match(line)
        marker = marker_match.group(1) if marker_match else ""
        kept = []
        for sentence in SENTENCE_SPLIT.split(line[len(marker) :].strip()):
            if not sentence:
                continue
            if any(pattern.search(sentence) for pattern in DOSING_PATTERNS):
                flags.append({"code": "medication_dosing", "severity": "removed", "detail": sentence[:200]})
                medication_removed = True
                continue
            reason = _contradiction(sentence, context)
            if reason:
                flags.append(
                    {"code": "contradicts_data", "severity": "removed", "detail": f"{reason}: {sentence[:160]}"}
                )
                continue
            diagnosis = DIAGNOSIS_PATTERN.search(sentence)
            if diagnosis:
                flags.append({"code": "diagnosis_as_fact", "severity": "rewritten", "detail": sentence[:200]})
                sentence = (
                    f"Some of your data may be consistent with {diagnosis.group('condition').lower()}, but only a clinician "
                    "can diagnose it; it is worth discussing at your next appointment."
                )
            kept.append(sentence)
        if kept or not line.strip():
            lines.append(marker + " ".join(kept))
    screened = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    kept_letters = sum(ch.isalpha() for ch in screened)
    if flags and kept_letters < MIN_KEPT_FRACTION * original_letters:
        flags.append(
            {
                "code": "too_little_left",
                "severity": "block",
                "detail": f"{kept_letters} of {original_letters} letters left after the screen",
            }
        )
        return SafetyResult("blocked", "", flags)
    if medication_removed:
        screened += ("\n\n" if screened else "") + MEDICATION_NOTE

    if not _escalation_present(screened):
        for red_flag in context.get("red_flags", []):
            screened += f"\n\n**{red_flag['action']}** ({red_flag['detail']}.)"
            flags.append({"code": "escalation_added", "severity": "added", "detail": red_flag["code"]})
    return SafetyResult("rewritten" if flags else "passed", screened, flags)
