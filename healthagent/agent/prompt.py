"""The prompt the language-model backends receive: instructions plus the context in plain words."""

from healthagent.agent.formatting import duration, number

SYSTEM_PROMPT = (
    "You are a personal health agent. You read a person's wearable data and measurements and give them "
    "practical, encouraging advice. Use only the numbers given to you, and quote them exactly. Never "
    "recommend starting, stopping or changing a medication or its dose, and never state a diagnosis: "
    "say what the data may suggest and when to see a clinician. Answer in markdown with at most four "
    "numbered recommendations, each one or two sentences."
)


def _metric_line(metric: dict, format_value) -> str | None:
    if metric["recent"] is None:
        return None
    line = f"- {metric['label']}: {format_value(metric['recent'])} {metric['unit']} on average over the last {metric['recent_days']} days"
    if metric["baseline"] is not None:
        line += f" (before that: {format_value(metric['baseline'])})"
    return line


def context_as_text(context: dict) -> str:
    """The context as short lines a small language model can follow."""
    person = context["participant"]
    lines = [f"Person: age {person['age_band']}, {person['sex']}."]
    for name, metric in context["metrics"].items():
        formatter = (
            (lambda v: duration(v))
            if name == "sleep_minutes"
            else (lambda v: number(v, 1 if isinstance(v, float) and v % 1 else 0))
        )
        line = _metric_line(metric, formatter)
        if line:
            lines.append(line.replace(" min on average", " on average") if name == "sleep_minutes" else line)
    if context["sleep_timing"]["midpoint_sd_min"] is not None:
        lines.append(
            f"- sleep timing varies by {duration(context['sleep_timing']['midpoint_sd_min'])} from night to night"
        )
    for name, measurement in context["measurements"].items():
        lines.append(
            f"- latest {name.replace('_', ' ')}: {measurement['value']} {measurement['unit']} ({measurement['days_ago']} days ago)"
        )
    for prediction in context.get("predictions", []):
        low, high = prediction["interval_90"]
        if prediction["kind"] == "regression":
            estimate = f"{prediction['estimate']} {prediction['unit']} (90 % interval {low} to {high})"
        else:
            estimate = f"{prediction['label']}, probability {prediction['estimate']} (90 % interval {low} to {high})"
        lines.append(f"- wearable-model estimate, not a diagnosis: {prediction['description']}: {estimate}")
    for effect in context.get("simulated_effects", []):
        lines.append(
            f"- predicted effect of {effect['description']}: {effect['mean']} {effect['unit']} on {effect['biomarker_label']}"
        )
    for flag in context["red_flags"]:
        lines.append(f"- warning: {flag['detail']}")
    return "\n".join(lines)


def chat_messages(context: dict) -> list[dict]:
    question = context.get("question") or "What should I change first to improve my health?"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"My data:\n{context_as_text(context)}\n\nMy question: {question}"},
    ]
