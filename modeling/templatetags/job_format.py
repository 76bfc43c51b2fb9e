"""Jobs in words on their pages: a kind's title instead of its code name, "CPU queue", "about 12 minutes"."""

from datetime import timedelta

from django import template

from modeling.jobs import JobError, job_kind

register = template.Library()


@register.filter
def kind_title(kind_name: str) -> str:
    """ "lsm_pretrain" -> "Wearable foundation model: pre-training"; an unknown kind keeps its name."""
    try:
        return job_kind(kind_name).title
    except JobError:
        return kind_name


@register.filter
def job_summary(job) -> str:
    """What tells the job from others of its kind (its kind's summary of its config), or "" for a kind without one."""
    try:
        return job_kind(job.kind).summary(job.config)
    except JobError:
        return ""


QUEUE_NAMES = {"cpu": "CPU", "gpu": "GPU"}


@register.filter
def queue_title(queue: str) -> str:
    """ "cpu" -> "CPU queue", "quick" -> "quick queue"."""
    return f"{QUEUE_NAMES.get(queue, queue)} queue" if queue else "—"


@register.filter
def about(duration: timedelta | None) -> str:
    """A rough duration: "under a minute", "about 12 minutes", "about 2.5 hours"; "unknown" for None."""
    if duration is None:
        return "unknown"
    minutes = duration.total_seconds() / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {round(minutes)} minute{'s' if round(minutes) != 1 else ''}"
    return f"about {minutes / 60:.1f} hours"


@register.filter
def ordinal(number: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th"."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def queue_place_words(place, queue: str) -> str:
    """A queued job's place in words: "2nd in the CPU queue (1 running); starts in about 3 minutes"; "" when it is not queued."""
    if place is None:
        return ""
    running = f" ({place.running} running)" if place.running else ""
    start = "starts next" if place.position == 1 and not place.running else f"starts in {about(place.starts_in)}"
    if place.starts_in is None and (place.position > 1 or place.running):
        start = "no estimate yet (a job ahead has not run before)"
    return f"{ordinal(place.position)} in the {queue_title(queue)}{running}; {start}"
