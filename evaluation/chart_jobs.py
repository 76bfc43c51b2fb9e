"""Job kind ``study_charts``: every item's chart of a study built once, as files, when the study opens (issue 27), so
that no clinician's first view of an item pays for building it (~150 ms of CPU) and every web process reads the same
file (healthagent.cohort.charts.minute_figure_file). Queued by evaluation.services.study_set_status; a chart missing
for any reason is still built by the first request that needs it."""

import logging

from django import forms

from evaluation.models import Study
from healthagent.cohort.charts import ChartError, chart_versions_prune, minute_figure_file
from healthagent.cohort.days import shown_days
from healthagent.models import Participant
from modeling.jobs import JobContext, JobKind, register

logger = logging.getLogger(__name__)


class StudyChartsForm(forms.Form):
    study = forms.IntegerField(min_value=1, help_text="The study whose items' charts to build.")


def study_chart_windows(study: Study) -> list[tuple[Participant, int, int]]:
    """(participant, first minute, end minute) of the chart each of the study's items shows, once per participant:
    the window the rating page's chart asks for (evaluation.views._window)."""
    participants = Participant.objects.filter(pk__in=study.items.values("participant_id")).order_by("pk")
    windows = []
    for participant in participants:
        days = shown_days(participant, study.window_days)
        windows.append((participant, *days.minutes))
    return windows


def run_study_charts(context: JobContext) -> dict:
    study = Study.objects.get(pk=context.config["study"])
    windows = study_chart_windows(study)
    try:
        pruned = len(chart_versions_prune())  # an upgrade's old charts go before the new ones are built
    except OSError:  # the deployment prunes too: this study's charts matter more
        logger.exception("older chart versions were not removed")
        pruned = 0
    failed = 0
    for number, (participant, start, end) in enumerate(windows, start=1):
        try:
            minute_figure_file(participant=participant, start_minute=start, end_minute=end)
        except (ChartError, OSError, ValueError):  # that participant's page builds (or explains) it; the rest go on
            logger.exception("the chart of participant #%s was not built", participant.pk)
            failed += 1
        context.progress(number / len(windows), f"chart {number} of {len(windows)}")
    return {"charts": len(windows) - failed, "failed": failed, "old_chart_versions_removed": pruned}


register(
    JobKind(
        "study_charts",
        "Build a study's charts",
        StudyChartsForm,
        run_study_charts,
        lambda config: "quick",
        "Every item's minute chart, built once as a compressed file when the study opens, so that clinicians' pages "
        "read it instead of building it.",
        summary=lambda config: f"study #{config.get('study', '')}",
    )
)
