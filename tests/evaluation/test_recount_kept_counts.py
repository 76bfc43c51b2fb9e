"""``manage.py recount_kept_counts``: the counts PostgreSQL keeps by trigger, counted again from their rows after a
way around the triggers made them wrong; ``--check`` only says so (exit 1)."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, ItemRaters, Study, StudyCounts, StudyItem
from tests.conftest import service_missing
from tests.evaluation.test_assignment import build_study

pytestmark = pytest.mark.django_db


def counted(study: Study) -> tuple[dict[int, int], tuple[int, int]]:
    items = {
        item.pk: Assignment.objects.filter(item=item, purpose="main").exclude(state="skipped").count()
        for item in study.items.all()
    }
    results = StudyItem.objects.filter(study=study, kind=StudyItem.Kind.RESULTS, dropped_at__isnull=True).count()
    return {pk: n for pk, n in items.items() if n}, (study.clinicians.count(), results)


def kept(study: Study) -> tuple[dict[int, int], tuple[int, int]]:
    items = {row.item_id: row.raters for row in ItemRaters.objects.filter(item__study=study) if row.raters}
    counts = StudyCounts.objects.get(study=study)
    return items, (counts.raters, counts.results_items)


@pytest.mark.services
def test_counts_made_wrong_around_the_triggers_are_found_and_set_right(capsys):
    if connection.vendor != "postgresql":
        service_missing("the kept counts are PostgreSQL's (set DATABASE_URL)")
    study = build_study(items=4, raters=3, k=2)
    for rater in study.clinicians.all():
        assignment_next(study=study, rater=rater)
    assert kept(study) == counted(study) and counted(study)[0]
    call_command("recount_kept_counts", "--check")
    assert "Every kept count agrees" in capsys.readouterr().out

    rated = sorted(counted(study)[0])  # items with raters: each corruption below changes a count
    assert len(rated) >= 2
    first, second = rated[:2]
    with connection.cursor() as cursor:  # as a bulk repair with the triggers off, or a loaddata with the counts
        cursor.execute("UPDATE evaluation_itemraters SET raters = raters + 5 WHERE item_id = %s", [first])
        cursor.execute("DELETE FROM evaluation_itemraters WHERE item_id = %s", [second])
        cursor.execute(
            "UPDATE evaluation_studycounts SET raters = 0, results_items = 99 WHERE study_id = %s", [study.pk]
        )
    assert kept(study) != counted(study)

    with pytest.raises(CommandError, match="2 item and 1 study counts differ"):
        call_command("recount_kept_counts", "--check")
    said = capsys.readouterr().out
    assert (
        f"item #{first}:" in said
        and f"item #{second}: 0 raters kept" in said
        and f"study #{study.pk}: 0 raters and 99 results items kept, 3 and 4" in said
    )
    assert kept(study) != counted(study)  # --check changes nothing

    call_command("recount_kept_counts")
    assert "2 item and 1 study counts set right" in capsys.readouterr().out
    assert kept(study) == counted(study)
    call_command("recount_kept_counts", "--check")
    # And the triggers go on from the right counts.
    rater = study.clinicians.order_by("pk").first()
    Assignment.objects.filter(rater=rater, study=study).update(state="skipped")
    assert kept(study) == counted(study)


def test_an_empty_site_has_nothing_to_set_right_and_sqlite_nothing_to_recount(capsys):
    call_command("recount_kept_counts")
    said = capsys.readouterr().out
    if connection.vendor == "postgresql":
        assert "Every kept count agrees" in said
    else:  # the embedded default keeps no counts
        assert "Nothing to recount" in said
