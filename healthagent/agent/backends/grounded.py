"""The default backend: offline, deterministic, and grounded in the numbers it cites.

Each rule looks at the context, and when its evidence is there it proposes one recommendation
with the numbers behind it (``citations``: every number in the text is one of them), an expected
benefit used for ranking, and a confidence that says how much data it rests on. The text is
composed from the items, so nothing is said that the items do not hold.
"""

import time
from dataclasses import dataclass, field

from healthagent.agent.backends.base import BackendAnswer
from healthagent.agent.context import MEASUREMENT_DECIMALS
from healthagent.agent.formatting import duration, number

MAX_ITEMS = 4


@dataclass
class Item:
    key: str
    title: str
    body: str  # may contain {0}, {1}, ... for the citations' display strings, in order
    benefit: float
    citations: list[dict] = field(default_factory=list)
    topics: tuple[str, ...] = ()

    def cite(self, *, source: str, value: float, display: str) -> str:
        """Record a cited number; ``source`` says where it comes from (a context path)."""
        self.citations.append({"source": source, "value": value, "display": display})
        return display

    def render(self) -> str:
        return self.body

    def as_dict(self, confidence: str) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "text": self.body,
            "expected_benefit": round(self.benefit, 2),
            "confidence": confidence,
            "citations": self.citations,
        }


def _metric(context: dict, name: str) -> dict:
    return context["metrics"][name]


def _sleep(context: dict) -> list[Item]:
    sleep = _metric(context, "sleep_minutes")
    norm = context["norms"]["sleep_hours"]
    items = []
    if sleep["recent"] is not None and sleep["recent"] < norm["low"] * 60:
        item = Item(
            "sleep_duration",
            "Protect your sleep",
            "",
            benefit=3.0 * (norm["low"] * 60 - sleep["recent"]) / 60 + 1.0,
            topics=("sleep", "tired", "energy"),
        )
        recent = item.cite(
            source="metrics.sleep_minutes.recent", value=sleep["recent"], display=duration(sleep["recent"])
        )
        nights = item.cite(
            source="metrics.sleep_minutes.recent_days", value=sleep["recent_days"], display=str(sleep["recent_days"])
        )
        window = item.cite(
            source="windows.recent_days",
            value=context["windows"]["recent_days"],
            display=str(context["windows"]["recent_days"]),
        )
        body = f"Your sleep averaged {recent} a night over the {nights} nights recorded in the last {window} days"
        if sleep["baseline"] is not None and sleep["change"] is not None and sleep["change"] <= -20:
            before = item.cite(
                source="metrics.sleep_minutes.baseline", value=sleep["baseline"], display=duration(sleep["baseline"])
            )
            body += f", down from {before} before"
        low = item.cite(source="norms.sleep_hours.low", value=norm["low"], display=str(norm["low"]))
        high = item.cite(source="norms.sleep_hours.high", value=norm["high"], display=str(norm["high"]))
        item.body = (
            f"{body}. Adults your age do best with {low} to {high} hours. Set a fixed bedtime that allows for that, "
            "keep screens out of the last half hour, and avoid caffeine after midday."
        )
        items.append(item)
    timing = context["sleep_timing"]
    if timing["midpoint_sd_min"] is not None and timing["midpoint_sd_min"] >= 60:
        item = Item(
            "sleep_regularity",
            "Keep a regular sleep schedule",
            "",
            benefit=1.2 + (timing["midpoint_sd_min"] - 60) / 60,
            topics=("sleep", "tired"),
        )
        spread = item.cite(
            source="sleep_timing.midpoint_sd_min",
            value=timing["midpoint_sd_min"],
            display=duration(timing["midpoint_sd_min"]),
        )
        nights = item.cite(source="sleep_timing.nights", value=timing["nights"], display=str(timing["nights"]))
        item.body = (
            f"The middle of your sleep moved by {spread} on a typical night (standard deviation over {nights} nights). "
            "Going to bed and getting up at the same times, weekends included, steadies your body clock."
        )
        items.append(item)
    return items


def _activity(context: dict) -> list[Item]:
    steps = _metric(context, "steps")
    active = _metric(context, "active_minutes")
    target = context["norms"]["daily_steps"]["target"]
    if steps["recent"] is None or steps["recent"] >= target:
        return []
    item = Item(
        "activity",
        "Move a little more each day",
        "",
        benefit=4.0 * (target - steps["recent"]) / target + 0.5,
        topics=("activity", "steps", "weight", "exercise"),
    )
    recent = item.cite(source="metrics.steps.recent", value=steps["recent"], display=number(steps["recent"]))
    days = item.cite(source="metrics.steps.recent_days", value=steps["recent_days"], display=str(steps["recent_days"]))
    goal = item.cite(source="norms.daily_steps.target", value=target, display=number(target))
    body = f"You averaged {recent} steps a day over {days} recent days; people who reach about {goal} a day live longer and healthier lives."
    if active["recent"] is not None:
        weekly = active["recent"] * 7
        minutes = item.cite(source="metrics.active_minutes.recent*7", value=weekly, display=number(weekly))
        guideline = item.cite(source="norms.active_minutes_per_week.target", value=150, display="150")
        if weekly >= 150:
            body += (
                f" Your brisk activity already comes to about {minutes} minutes a week, above the recommended {guideline}, "
                "so the gap is in everyday movement between workouts."
            )
        else:
            body += f" Your brisk activity came to about {minutes} minutes a week, against the recommended {guideline}."
    item.body = body + " A short walk after each meal is an easy place to start."
    return [item]


def _heart(context: dict) -> list[Item]:
    items = []
    resting = _metric(context, "resting_heart_rate_bpm")
    if resting["change"] is not None and resting["change"] >= 3:
        item = Item(
            "resting_heart_rate",
            "Give your body time to recover",
            "",
            benefit=2.0 + (resting["change"] - 3) / 3,
            topics=("heart", "tired", "stress"),
        )
        before = item.cite(
            source="metrics.resting_heart_rate_bpm.baseline",
            value=resting["baseline"],
            display=number(resting["baseline"], 1),
        )
        now = item.cite(
            source="metrics.resting_heart_rate_bpm.recent",
            value=resting["recent"],
            display=number(resting["recent"], 1),
        )
        item.body = (
            f"Your resting heart rate rose from {before} to {now} bpm. That often follows short sleep, stress, alcohol "
            "or a coming infection: take lighter days, drink enough water, and note whether you feel unwell."
        )
        items.append(item)
    hrv = _metric(context, "hrv_rmssd_ms")
    if hrv["change"] is not None and hrv["baseline"] and hrv["change"] <= -0.15 * hrv["baseline"]:
        item = Item("hrv", "Make room for rest and recovery", "", benefit=1.5, topics=("stress", "heart", "recovery"))
        before = item.cite(
            source="metrics.hrv_rmssd_ms.baseline", value=hrv["baseline"], display=number(hrv["baseline"], 1)
        )
        now = item.cite(source="metrics.hrv_rmssd_ms.recent", value=hrv["recent"], display=number(hrv["recent"], 1))
        item.body = (
            f"Your night-time heart-rate variability fell from {before} to {now} ms, a sign of strain. Slow breathing "
            "before bed and an easier training day help it recover."
        )
        items.append(item)
    return items


def _blood_pressure(context: dict) -> list[Item]:
    systolic, diastolic = context["measurements"].get("systolic_bp"), context["measurements"].get("diastolic_bp")
    if not systolic or not diastolic or (systolic["value"] < 130 and diastolic["value"] < 80):
        return []
    item = Item(
        "blood_pressure",
        "Bring your blood pressure down",
        "",
        benefit=3.0 + max(systolic["value"] - 130, 0) / 10,
        topics=("blood pressure", "heart"),
    )
    sbp = item.cite(
        source="measurements.systolic_bp.value",
        value=systolic["value"],
        display=number(systolic["value"], MEASUREMENT_DECIMALS.get("systolic_bp", 0)),
    )
    dbp = item.cite(
        source="measurements.diastolic_bp.value",
        value=diastolic["value"],
        display=number(diastolic["value"], MEASUREMENT_DECIMALS.get("diastolic_bp", 0)),
    )
    ago = item.cite(
        source="measurements.systolic_bp.days_ago", value=systolic["days_ago"], display=str(systolic["days_ago"])
    )
    item.body = (
        f"Your last blood pressure reading, {ago} days ago, was {sbp}/{dbp} mmHg, above the healthy range. Less salt, "
        "regular walking and limiting alcohol all lower it; measure it at home for a week and share the readings with your clinician."
    )
    return [item]


def _labs(context: dict) -> list[Item]:
    items = []
    hba1c = context["measurements"].get("hba1c")
    threshold = context["norms"]["hba1c_pct"]["prediabetes"]
    if hba1c and hba1c["value"] >= threshold:
        item = Item(
            "glucose",
            "Steady your blood sugar",
            "",
            benefit=3.0 + (hba1c["value"] - threshold) * 2,
            topics=("sugar", "glucose", "diabetes", "diet", "weight"),
        )
        value = item.cite(
            source="measurements.hba1c.value",
            value=hba1c["value"],
            display=number(hba1c["value"], MEASUREMENT_DECIMALS["hba1c"]),
        )
        cut = item.cite(source="norms.hba1c_pct.prediabetes", value=threshold, display=number(threshold, 1))
        item.body = (
            f"Your latest HbA1c was {value} %, at or above the {cut} % where blood sugar starts to need attention. "
            "Fewer sugary drinks and refined carbohydrates, and a walk after meals, lower it; ask your clinician about a follow-up test."
        )
        items.append(item)
    ldl = context["measurements"].get("ldl")
    if ldl and ldl["value"] >= 130:
        item = Item(
            "cholesterol",
            "Look after your cholesterol",
            "",
            benefit=2.0 + (ldl["value"] - 130) / 40,
            topics=("cholesterol", "diet", "heart"),
        )
        value = item.cite(
            source="measurements.ldl.value",
            value=ldl["value"],
            display=number(ldl["value"], MEASUREMENT_DECIMALS.get("ldl", 0)),
        )
        item.body = (
            f"Your latest LDL cholesterol was {value} mg/dL. More fibre, nuts, oily fish and olive oil in place of "
            "butter and fatty meat lower it; your clinician can tell you whether anything more is worthwhile."
        )
        items.append(item)
    return items


def _stress(context: dict) -> list[Item]:
    stress = _metric(context, "stress_score")
    if stress["recent"] is None or stress["recent"] < 60:
        return []
    item = Item(
        "stress",
        "Build short breaks into your day",
        "",
        benefit=1.0 + (stress["recent"] - 60) / 20,
        topics=("stress", "anxiety", "mood"),
    )
    value = item.cite(source="metrics.stress_score.recent", value=stress["recent"], display=number(stress["recent"]))
    item.body = (
        f"Your stress score averaged {value} out of a hundred recently. Two or three short pauses a day for slow breathing "
        "or a short walk outside lower it measurably."
    )
    return [item]


def _simulated(context: dict) -> list[Item]:
    items = []
    for effect in context.get("simulated_effects", []):
        item = Item(
            f"simulated_{effect['intervention']}",
            effect.get("title", effect["intervention"].replace("_", " ").capitalize()),
            "",
            benefit=abs(effect["mean"]) / max(effect.get("scale", 1.0), 1e-6),
            topics=tuple(effect.get("topics", ())),
        )
        mean = item.cite(
            source=f"simulated_effects.{effect['intervention']}.mean",
            value=effect["mean"],
            display=number(abs(effect["mean"]), 1),
        )
        # The interval's ends by size, so a predicted fall reads "by 4 (2 to 6)" like a rise.
        near, far = sorted(("low", "high"), key=lambda end: abs(effect[end]))
        low = item.cite(
            source=f"simulated_effects.{effect['intervention']}.{near}",
            value=effect[near],
            display=number(abs(effect[near]), 1),
        )
        high = item.cite(
            source=f"simulated_effects.{effect['intervention']}.{far}",
            value=effect[far],
            display=number(abs(effect[far]), 1),
        )
        direction = "lower" if effect["mean"] < 0 else "raise"
        item.body = (
            f"{effect['description']} is predicted to {direction} your {effect['biomarker_label']} by {mean} {effect['unit']} "
            f"({low} to {high})."
        )
        items.append(item)
    return items


RULES = (_sleep, _activity, _heart, _blood_pressure, _labs, _stress, _simulated)


def _confidence(context: dict) -> str:
    days = context["data_quality"]["days_with_data"]
    return "high" if days >= 21 else "moderate" if days >= 7 else "low"


def grounded_items(context: dict) -> list[dict]:
    """The recommendations the evidence supports, best first (at most four)."""
    candidates = [item for rule in RULES for item in rule(context)]
    question = context.get("question", "").lower()
    if question:  # what the participant asked about comes first among comparable benefits
        for item in candidates:
            if any(topic in question for topic in item.topics):
                item.benefit += 2.0
    candidates.sort(key=lambda item: (-item.benefit, item.key))
    confidence = _confidence(context)
    return [item.as_dict(confidence) for item in candidates[:MAX_ITEMS]]


def render(context: dict, items: list[dict], *, opening: str = "") -> str:
    days = context["data_quality"]["days_with_data"]
    lines = []
    if opening:
        lines += [opening, ""]
    if context.get("question"):
        lines += [f"You asked: *{context['question']}*", ""]
    if not items:
        lines.append(
            f"Your last {days} days of data look steady: sleep, activity and heart measures are within healthy ranges. Keep doing what you are doing."
        )
    for position, item in enumerate(items, start=1):
        lines.append(f"{position}. **{item['title']}.** {item['text']}")
    lines += [
        "",
        f"_Confidence: {items[0]['confidence'] if items else _confidence(context)}, from {days} days of wearable data "
        "and your recorded measurements. This is guidance, not a diagnosis._",
    ]
    return "\n".join(lines)


class GroundedBackend:
    name = "grounded"

    def __init__(self, config: dict | None = None):
        self.config = config or {}

    def generate(self, context: dict, *, timeout_s: float) -> BackendAnswer:
        started = time.perf_counter()
        items = grounded_items(context)
        text = render(context, items)
        return BackendAnswer(
            text=text,
            items=items,
            metadata={"backend": self.name, "latency_s": round(time.perf_counter() - started, 4)},
        )
