"""Reads of cohorts and participants, with the access rule in one place."""

from django.contrib.auth.models import User
from django.db.models import Count, QuerySet
from django.http import Http404

from healthagent.cohort.measurements import HEIGHT
from healthagent.models import Cohort, Participant
from healthagent.roles import Role, user_has_role

BROWSE_ROLES = (Role.RESEARCHER, Role.ADMIN)


def cohort_list() -> list[Cohort]:
    return list(Cohort.objects.annotate(participant_count=Count("participants")).order_by("name"))


def access_participant(*, user: User, participant_id: int) -> Participant:
    """The participant, if ``user`` may browse participants (researchers and admins); else 404.

    Clinicians never browse: they see a participant only inside an item assigned to them.
    """
    if not user_has_role(user, *BROWSE_ROLES):
        raise Http404("no such participant")
    try:
        return Participant.objects.select_related("cohort").get(pk=participant_id)
    except Participant.DoesNotExist as error:
        raise Http404("no such participant") from error


def participant_list(*, cohort: Cohort) -> QuerySet[Participant]:
    return cohort.participants.annotate(measurement_count=Count("measurements", distinct=True)).order_by("pseudonym")


def participant_profile(participant: Participant) -> dict[str, str]:
    """Age band and sex in words, as the anonymized record has them. What k-anonymity withheld
    (``anonymize.k_anonymize``: age band ``*``, and sex ``unknown`` when that was withheld too) is said
    as such rather than shown as "*" and "Unknown"; what the source never recorded is said to be unrecorded."""
    band = participant.age_band
    age_band = {"*": "band withheld for anonymity", "unknown": "not recorded"}.get(band, band.replace("-", "–"))
    if participant.sex != Participant.Sex.UNKNOWN:
        sex = participant.get_sex_display()
    else:
        sex = "sex withheld for anonymity" if band == "*" else "sex not recorded"
    return {"age_band": age_band, "sex": sex}


def participant_height_cm(participant: Participant) -> float | None:
    """The latest height measured (the one the twin reads obesity against), or None."""
    latest = participant.measurements.filter(name=HEIGHT).order_by("-day_index", "-pk").first()
    return None if latest is None else latest.value
