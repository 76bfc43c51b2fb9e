"""The admin role in the Django admin has least privilege (issue 23): it manages users and gives roles, but cannot
make anyone (itself included) a superuser, give single permissions, edit a superuser, rewrite groups' permissions,
read sessions or mint an API token for another user. The admin group's permissions are granted on migrate."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from knox.models import AuthToken

from healthagent.apps import grant_admin_group_permissions
from healthagent.roles import Role, user_roles
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    grant_admin_group_permissions(sender=None)  # as after a migrate (a flushed database has no grants)
    admin = UserFactory(role=Role.ADMIN)
    client.force_login(admin)
    return admin


def user_form(user: User, **changes) -> dict:
    """The change form's fields as an admin would post them."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    if user.is_staff:
        data["is_staff"] = "on"
    return data | changes


def test_an_admin_gives_roles_but_cannot_make_a_superuser_or_give_single_permissions(client, admin):
    clinician = UserFactory(role=Role.CLINICIAN)
    researcher_group = Group.objects.get(name=Role.RESEARCHER)
    url = reverse("admin:auth_user_change", args=[clinician.pk])
    form = client.get(url).content.decode()
    assert 'name="groups"' in form and 'name="is_superuser"' not in form and 'name="user_permissions"' not in form

    response = client.post(
        url, user_form(clinician, groups=[str(researcher_group.pk)], is_superuser="on", user_permissions=["1"])
    )
    assert response.status_code == 302
    clinician.refresh_from_db()
    assert user_roles(clinician) == {Role.RESEARCHER}  # the role was given
    assert not clinician.is_superuser and not clinician.user_permissions.exists()  # the rest was ignored

    client.post(reverse("admin:auth_user_change", args=[admin.pk]), user_form(admin, is_superuser="on"))
    admin.refresh_from_db()
    assert not admin.is_superuser


def test_an_admin_cannot_edit_delete_or_reset_a_superuser(client, admin):
    root = UserFactory(is_superuser=True, is_staff=True)
    assert client.post(reverse("admin:auth_user_change", args=[root.pk]), user_form(root)).status_code == 403
    password_url = reverse("admin:auth_user_password_change", args=[root.pk])
    assert client.post(password_url, {"password1": "x" * 20, "password2": "x" * 20}).status_code == 403
    assert client.post(reverse("admin:auth_user_delete", args=[root.pk]), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [str(root.pk)], "post": "yes"}
    assert client.post(reverse("admin:auth_user_changelist"), bulk).status_code == 403
    root.refresh_from_db()  # still there, still a superuser, with its own password
    assert root.is_superuser and root.check_password(DEFAULT_PASSWORD)


def test_an_admin_has_no_permission_to_rewrite_groups_read_sessions_or_mint_tokens(client, admin):
    admin = User.objects.get(pk=admin.pk)  # no cached permissions
    for permission in (
        "auth.change_group",
        "auth.add_group",
        "auth.change_permission",
        "sessions.view_session",
        "knox.add_authtoken",
        "knox.view_authtoken",
        "admin.delete_logentry",
        "contenttypes.change_contenttype",
    ):
        assert not admin.has_perm(permission), permission
    assert admin.has_perm("auth.change_user") and admin.has_perm("healthagent.change_cohort")
    assert client.get(reverse("admin:knox_authtoken_add")).status_code == 403
    group = Group.objects.get(name=Role.CLINICIAN)
    assert client.post(reverse("admin:auth_group_change", args=[group.pk]), {"name": "x"}).status_code == 403
    assert not AuthToken.objects.exists()
