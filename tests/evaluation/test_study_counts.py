"""A study's enrolled raters and results items as PostgreSQL keeps them (models.StudyCounts, by triggers) and as the
ORM counts them: the rating page's progress reads the kept ones (evaluation.access.study_counts_sql)."""

import pytest
from django.db import connection
from django.utils import timezone

from evaluation.models import Study, StudyCounts, StudyItem
from tests.conftest import service_missing
from tests.evaluation.test_assignment import build_study
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _kept(study: Study) -> tuple[int, int]:
    counts = StudyCounts.objects.filter(study=study).first()
    return (counts.raters, counts.results_items) if counts else (0, 0)


def _counted(study: Study) -> tuple[int, int]:
    items = StudyItem.objects.filter(study=study, kind=StudyItem.Kind.RESULTS, dropped_at__isnull=True)
    return study.clinicians.count(), items.count()


@pytest.mark.services
def test_postgresql_keeps_each_studys_raters_and_results_items_whatever_writes_them():
    """Enrolments added one by one and in bulk, removed, cleared and set; items made, dropped and restored, of another
    kind, moved to another study and deleted; the study deleted with its rows. After each, the kept counts are the
    counted ones, for both studies."""
    if connection.vendor != "postgresql":
        service_missing("the kept counts are PostgreSQL's (set DATABASE_URL)")
    study = build_study(items=5, raters=3, k=2)
    other = build_study(items=2, raters=2, k=1)

    def agree() -> tuple[int, int]:
        assert _kept(other) == _counted(other)
        assert _kept(study) == _counted(study)
        return _kept(study)

    assert agree() == (3, 5)
    newcomers = UserFactory.create_batch(3)
    study.clinicians.add(newcomers[0])
    study.clinicians.add(*newcomers[1:])
    assert agree() == (6, 5)
    study.clinicians.remove(newcomers[0])
    assert agree() == (5, 5)
    study.clinicians.set(newcomers)
    assert agree() == (3, 5)
    study.clinicians.clear()
    assert agree() == (0, 5)
    study.clinicians.add(*newcomers)

    items = list(study.items.order_by("pk"))
    StudyItem.objects.filter(pk=items[0].pk).update(dropped_at=timezone.now())
    StudyItem.objects.filter(pk=items[1].pk).update(kind=StudyItem.Kind.GOLD)
    assert agree() == (3, 3)
    StudyItem.objects.filter(pk=items[0].pk).update(dropped_at=None)  # restored
    StudyItem.objects.filter(pk=items[2].pk).update(study=other)  # moved
    StudyItem.objects.filter(pk=items[1].pk).update(kind=StudyItem.Kind.GOLD, dropped_at=timezone.now())  # not counted
    assert agree() == (3, 3) and _kept(other) == (2, 3)
    StudyItem.objects.filter(pk=items[3].pk).delete()
    assert agree() == (3, 2)

    study.delete()  # its enrolments, items and counts together; the other study's stand
    assert not StudyCounts.objects.filter(study_id=items[0].study_id).exists()
    assert _kept(other) == _counted(other) == (2, 3)


@pytest.mark.services
def test_the_rating_pages_progress_reads_the_counts_postgresql_keeps():
    """The rating page's read (evaluation.access, with its progress) and rater_progress's own query take the study's
    raters and items from StudyCounts: set apart from the true counts here, they show through."""
    if connection.vendor != "postgresql":
        service_missing("the kept counts are PostgreSQL's (set DATABASE_URL)")
    from evaluation.access import access_assignment
    from evaluation.models import Assignment
    from evaluation.selectors import rater_progress

    study = build_study(items=4, raters=2, k=2)
    rater = study.clinicians.order_by("pk").first()
    mine = Assignment.objects.create(study=study, item=study.items.order_by("pk").first(), rater=rater)
    assert access_assignment(assignment_id=mine.pk, rater=rater, with_progress=True).progress_counts[3:] == (2, 4)
    StudyCounts.objects.filter(study=study).update(raters=40, results_items=100)
    assert access_assignment(assignment_id=mine.pk, rater=rater, with_progress=True).progress_counts[3:] == (40, 100)
    assert rater_progress(study=study, rater=rater)["total"] == 5  # ceil(100 items x 2 raters / 40 raters)
