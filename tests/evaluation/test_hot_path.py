"""The three requests of a rated item read less than the ORM would make them (issue 27): the assignment and its
joins in one hand-written statement, a rubric's dimensions once per version, the participant's record rendered once
per window. Each must give exactly what the plain reads give, and see a change at once."""

import pytest
from django.conf import settings
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Dimension
from evaluation.services import EvaluationError, NotInQueue, access_assignment, rating_submit
from tests.conftest import service_missing
from tests.factories import UserFactory, submit_led_to

pytestmark = pytest.mark.django_db


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_the_joined_read_gives_what_the_orm_gives(grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    Assignment.objects.filter(pk=opened.pk).update(draft={"comment": "half way", "scores": {"relevance": 4}})
    read = access_assignment(assignment_id=opened.pk, rater=clinician)
    orm = Assignment.objects.select_related("study__rubric", "item__participant").get(pk=opened.pk)
    for ours, theirs in (
        (read, orm),
        (read.study, orm.study),
        (read.study.rubric, orm.study.rubric),
        (read.item, orm.item),
        (read.item.participant, orm.item.participant),
    ):
        assert type(ours) is type(theirs) and _fields(ours) == _fields(theirs)
        assert not ours._state.adding and ours._state.db == "default"
    assert read.draft == {"comment": "half way", "scores": {"relevance": 4}}  # JSON, not its text
    assert read.study.opened_at is not None and read.study.opened_at.tzinfo is not None


def test_an_instance_from_a_row_is_the_one_from_db_makes(grounded_study):
    """healthagent.joined.from_row skips Model.__init__: the instance must be what from_db makes (its attributes and
    state alike), and a model some code listens to the construction of goes through from_db, signals and all."""
    from django.db.models.signals import post_init, pre_init

    from healthagent.joined import from_row

    assert not pre_init.receivers and not post_init.receivers  # so the site's reads take the path tested here
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    for instance in (opened, opened.study, opened.item, opened.item.participant, clinician):
        model = type(instance)
        names = [field.attname for field in model._meta.concrete_fields]
        values = [getattr(model.objects.get(pk=instance.pk), name) for name in names]
        ours, theirs = from_row(model, "default", names, values), model.from_db("default", names, values)
        assert {k: v for k, v in vars(ours).items() if k != "_state"} == {
            k: v for k, v in vars(theirs).items() if k != "_state"
        }
        assert (ours._state.adding, ours._state.db) == (theirs._state.adding, theirs._state.db) == (False, "default")
        assert ours == theirs
    built = []

    def listener(sender, instance, **kwargs):
        built.append(instance)

    post_init.connect(listener, sender=Assignment)
    try:
        names = [field.attname for field in Assignment._meta.concrete_fields]
        made = from_row(Assignment, "default", names, [getattr(opened, name) for name in names])
    finally:
        post_init.disconnect(listener, sender=Assignment)
    assert built == [made]


def test_the_joined_read_is_the_access_check(grounded_study):
    first, second = grounded_study.clinicians.order_by("pk")[:2]
    opened = assignment_next(study=grounded_study, rater=first)
    for rater in (second, UserFactory(role="clinician")):  # another clinician's item; someone not in the study
        with pytest.raises(NotInQueue):
            access_assignment(assignment_id=opened.pk, rater=rater)
    with pytest.raises(NotInQueue):
        access_assignment(assignment_id=opened.pk + 1000, rater=first)
    grounded_study.clinicians.remove(first)  # removed from the study: their items go with it
    with pytest.raises(NotInQueue):
        access_assignment(assignment_id=opened.pk, rater=first, for_update=True)


def test_a_changed_dimension_is_shown_and_checked_at_once(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    opened = assignment_next(study=grounded_study, rater=clinician)
    page = reverse("evaluation:assignment", args=[opened.pk])
    assert "Relevance" in client.get(page).content.decode()  # read, and kept by this process
    version = grounded_study.rubric.version
    relevance = Dimension.objects.get(rubric=grounded_study.rubric, key="relevance")
    relevance.label, relevance.scale_max = "Pertinence", 3
    relevance.save()
    grounded_study.rubric.refresh_from_db()
    assert grounded_study.rubric.version != version
    assert "Pertinence" in client.get(page).content.decode()
    with pytest.raises(EvaluationError, match="one of 1, 2, 3"):
        rating_submit(assignment_id=opened.pk, rater=clinician, scores={"relevance": 5, "context": 3, "safety": 5})
    rubric = grounded_study.rubric
    rubric.refresh_from_db()
    before, rubric.description = rubric.version, "Edited in the admin"
    rubric.save()  # writes back the version it was read with, then renews it
    rubric.refresh_from_db()
    assert rubric.version != before
    relevance.delete()
    rating = rating_submit(assignment_id=opened.pk, rater=clinician, scores={"context": 3, "safety": 5})
    assert rating.scores == {"context": 3, "safety": 5}


def test_the_participant_record_is_rendered_once_per_window(client, grounded_study, django_assert_max_num_queries):
    first, second = grounded_study.clinicians.order_by("pk")[:2]
    opened = assignment_next(study=grounded_study, rater=first)
    beside = Assignment.objects.create(study=grounded_study, item=opened.item, rater=second)  # the same item
    pages = [reverse("evaluation:assignment", args=[assignment.pk]) for assignment in (opened, beside)]
    client.force_login(first)
    shown = client.get(pages[0]).content.decode()
    client.force_login(second)
    client.get(reverse("evaluation:queue"))  # where a clinician comes from: their unread notifications counted, cached
    # the user; the assignment and its joins (and whether its item has criteria: none); the progress (and the session,
    # without Redis)
    with django_assert_max_num_queries(3 + (settings.SESSION_ENGINE != "healthagent.sessions")):
        again = client.get(pages[1]).content.decode()

    def record(html: str) -> str:
        start = html.index('<section class="participant-record"')
        return html[start : html.index("</section>", start)]

    assert record(again) == record(shown) and "Latest measurements" in record(shown)


def test_a_submit_hands_out_the_item_left_open_in_another_tab(client, grounded_study):
    """The turn read at the submit knows the rater's other open item: the next page is that one, not a new one."""
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    first = assignment_next(study=grounded_study, rater=clinician)
    other_item = grounded_study.items.exclude(pk=first.item_id).first()
    other = Assignment.objects.create(study=grounded_study, item=other_item, rater=clinician)  # a second tab's item
    response = client.post(
        reverse("evaluation:assignment_submit", args=[first.pk]),
        {"score-relevance": "4", "score-context": "3", "score-safety": "5"},
    )
    assert submit_led_to(response) == reverse("evaluation:assignment", args=[other.pk])
    assert Assignment.objects.filter(rater=clinician, study=grounded_study).count() == 2


def test_a_rater_paused_by_their_submit_is_given_no_next_item(client, grounded_study):
    """The submit's own pause (gold accuracy below the threshold) is seen by the hand-out that follows it."""
    from evaluation.models import StudyItem, StudyRater

    type(grounded_study).objects.filter(pk=grounded_study.pk).update(gold_rate=0.5, gold_minimum=1, pass_threshold=0.9)
    grounded_study.refresh_from_db()
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    gold = StudyItem.objects.create(
        study=grounded_study,
        participant=grounded_study.items.first().participant,
        variant_a=grounded_study.items.first().variant_a,
        kind=StudyItem.Kind.GOLD,
        position=99,
        reference={"relevance": 5, "context": 5, "safety": 5},
    )
    standing, _ = StudyRater.objects.get_or_create(study=grounded_study, rater=clinician)
    missed = Assignment.objects.create(study=grounded_study, item=gold, rater=clinician, purpose="gold")
    rating_submit(assignment_id=missed.pk, rater=clinician, scores={"relevance": 1, "context": 1, "safety": 1})
    main = assignment_next(study=grounded_study, rater=clinician)
    assert main is not None and main.purpose == "main"  # the pause is decided on the next main rating
    response = client.post(
        reverse("evaluation:assignment_submit", args=[main.pk]),
        {"score-relevance": "4", "score-context": "3", "score-safety": "5"},
    )
    standing.refresh_from_db()
    assert standing.state == StudyRater.State.PAUSED
    assert response["Location"] == reverse("evaluation:study_next", args=[grounded_study.pk])
    assert not Assignment.objects.filter(rater=clinician, state="in_progress").exists()


def test_the_hot_reads_are_prepared_once_per_connection_on_postgresql(grounded_study):
    """The user's and the assignment's reads are planned once per connection (healthagent.joined.prepared_cursor),
    with the roles and access they always had."""
    from django.db import connection

    from healthagent.roles import Role, user_roles, user_with_roles

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)

    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in cursor.fetchall()]

    before = len(prepared())
    for _ in range(3):
        assert user_roles(user_with_roles(clinician.pk)) == {Role.CLINICIAN}
        assert access_assignment(assignment_id=opened.pk, rater=clinician).pk == opened.pk
    statements = prepared()
    assert len(statements) == before + 2  # each prepared once, whatever the number of executions
    assert any('"auth_user" u WHERE u.id' in text for text in statements)
    assert user_with_roles(10**20) is None and user_with_roles("not an id") is None


def test_the_turn_reads_the_gold_accuracy_the_pause_is_decided_on(grounded_study):
    """``RaterTurn.gold`` (read with the submit's lock) is ``raters.gold_accuracy``, reinstatement included."""
    from django.db import transaction
    from django.utils import timezone

    from evaluation.access import access_turn
    from evaluation.models import StudyItem, StudyRater
    from evaluation.raters import gold_accuracy

    clinician = grounded_study.clinicians.order_by("pk").first()
    first = grounded_study.items.first()
    standing, _ = StudyRater.objects.get_or_create(study=grounded_study, rater=clinician)

    def gold_rated(position: int, score: int) -> None:
        item = StudyItem.objects.create(
            study=grounded_study,
            participant=first.participant,
            variant_a=first.variant_a,
            kind=StudyItem.Kind.GOLD,
            position=position,
            reference={"relevance": 5, "context": 5, "safety": 5},
        )
        given = Assignment.objects.create(study=grounded_study, item=item, rater=clinician, purpose="gold")
        rating_submit(
            assignment_id=given.pk, rater=clinician, scores=dict.fromkeys(("relevance", "context", "safety"), score)
        )

    def both() -> tuple[tuple[int, int], tuple[int, int]]:
        opened = assignment_next(study=grounded_study, rater=clinician)
        standing.refresh_from_db()
        with transaction.atomic():
            turn = access_turn(assignment_id=opened.pk, rater=clinician)
        return turn.gold, gold_accuracy(grounded_study, standing)

    gold_rated(97, 1)
    gold_rated(98, 5)
    assert both() == ((1, 2), (1, 2))
    StudyRater.objects.filter(pk=standing.pk).update(reinstated_at=timezone.now())
    assert both() == ((0, 0), (0, 0))  # only gold items rated since the reinstatement count
    gold_rated(99, 5)
    assert both() == ((1, 1), (1, 1))


def test_the_scales_are_rendered_once_per_rubric_version_and_a_draft_shows_its_answers(client, grounded_study):
    from django.core.cache import caches

    first, second = grounded_study.clinicians.order_by("pk")[:2]
    opened = assignment_next(study=grounded_study, rater=first)
    client.force_login(first)
    page = client.get(reverse("evaluation:assignment", args=[opened.pk])).content.decode()
    assert (
        'name="score-relevance"' in page and " checked" not in page.split("data-rating-form", 1)[1].split("</form>")[0]
    )
    rubric = grounded_study.rubric
    assert caches["fragments"].get(f"scales:{rubric.pk}:{rubric.version}:0") is not None  # kept for the next item
    Assignment.objects.filter(pk=opened.pk).update(draft={"scores": {"relevance": 4}})
    drafted = client.get(reverse("evaluation:assignment", args=[opened.pk])).content.decode()
    assert 'name="score-relevance" value="4" data-key="4" checked' in drafted  # the draft's answer, not the kept copy
    other = assignment_next(study=grounded_study, rater=second)
    client.force_login(second)
    fresh = client.get(reverse("evaluation:assignment", args=[other.pk])).content.decode()
    assert 'value="4" data-key="4" checked' not in fresh  # a draft's answer never reaches the kept markup


def test_the_form_s_kept_parts_never_carry_one_item_s_entries_to_another(client, grounded_study):
    """The form's parts after the scales (comment, unsafe flag, evidence, submit) and the harm questions are kept
    rendered for items with nothing entered; a draft's entries are rendered each time, and never kept."""
    first, second = grounded_study.clinicians.order_by("pk")[:2]
    opened = assignment_next(study=grounded_study, rater=first)
    client.force_login(first)
    page = reverse("evaluation:assignment", args=[opened.pk])
    assert 'id="comment" name="comment"' in client.get(page).content.decode()  # fresh: rendered and kept
    Assignment.objects.filter(pk=opened.pk).update(
        draft={"comment": "Words of a draft", "unsafe": True, "unsafe_reason": "A reason of a draft"}
    )
    drafted = client.get(page).content.decode()
    assert "Words of a draft" in drafted and 'value="A reason of a draft"' in drafted
    assert '<input type="checkbox" name="unsafe" id="unsafe" checked>' in drafted
    other = assignment_next(study=grounded_study, rater=second)
    client.force_login(second)
    fresh = client.get(reverse("evaluation:assignment", args=[other.pk])).content.decode()
    assert "of a draft" not in fresh and '<input type="checkbox" name="unsafe" id="unsafe" >' in fresh
    assert fresh.count('id="keyboard-help"') == 1 and "Submit and next" in fresh


def test_with_prepared_statements_off_the_hot_reads_are_plain_and_give_the_same(grounded_study):
    """``DATABASE_PREPARED_STATEMENTS=0`` (settings) gives the connection no ``prepare_threshold``: the same reads
    then prepare nothing (as behind a transaction-mode PgBouncer older than 1.21) and answer as before."""
    from django.db import connection

    from healthagent.roles import Role, user_roles, user_with_roles

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    connection.ensure_connection()
    kept = connection.connection.prepare_threshold
    connection.connection.prepare_threshold = None
    try:
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        for _ in range(3):
            assert user_roles(user_with_roles(clinician.pk)) == {Role.CLINICIAN}
            assert access_assignment(assignment_id=opened.pk, rater=clinician).pk == opened.pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pg_prepared_statements")
            assert cursor.fetchone()[0] == 0
    finally:
        connection.connection.prepare_threshold = kept


def test_the_hot_prepared_reads_are_planned_once_per_connection(grounded_study):
    """The connection plans its prepared statements once (settings: ``plan_cache_mode``): left to choose, PostgreSQL
    planned some of them again on every execution under the load test. Django's own statements are not prepared."""
    from django.db import connection

    from healthagent.roles import user_with_roles

    if connection.vendor != "postgresql":
        service_missing("prepared statements are PostgreSQL's (set DATABASE_URL)")
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"
        cursor.execute("DEALLOCATE ALL")
    for _ in range(8):  # past the five custom plans PostgreSQL otherwise makes before it weighs a generic one
        assert user_with_roles(clinician.pk).pk == clinician.pk
        assert access_assignment(assignment_id=opened.pk, rater=clinician).pk == opened.pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements")
        plans = cursor.fetchall()
    assert len(plans) == 2 and all(custom == 0 and generic == 8 for generic, custom in plans)
