"""Nothing leaks, even to insiders (issue 23): a simulation (a participant and the interventions a researcher weighs)
is followed by the researcher who queued it and by admins, not by other researchers."""

import pytest
from django.urls import reverse

from healthagent.roles import Role
from modeling.models import Job
from modeling.selectors import simulations_visible_to
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_another_researcher_cannot_follow_a_simulation(client):
    owner, other, admin = (
        UserFactory(role=Role.RESEARCHER),
        UserFactory(role=Role.RESEARCHER),
        UserFactory(role=Role.ADMIN),
    )
    job = Job.objects.create(kind="simulate", config={"interventions": ["walk"]}, state="queued", queued_by=owner)
    status = reverse("modeling:twin_status", args=[job.pk])
    for user, code in ((owner, 200), (admin, 200), (other, 404)):
        client.force_login(user)
        assert client.get(status).status_code == code, user
    client.force_login(other)
    page = client.get(reverse("modeling:twin") + f"?job={job.pk}").content.decode()
    assert "data-twin-job" not in page and f"/ws/twin/jobs/{job.pk}/" not in page
    assert list(simulations_visible_to(other)) == [] and list(simulations_visible_to(admin)) == [job]
