"""Prepare the test provider's database: its tables, an RSA signing key, one confidential client, and people.

Run as ``python -m tests.idp.setup REDIRECT_URI`` with IDP_SITE_URL and IDP_DATABASE set; prints nothing."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.idp.settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oidc_provider.models import Client, ResponseType  # noqa: E402

from tests.idp.people import CLIENT_ID, CLIENT_SECRET, PASSWORD, PEOPLE  # noqa: E402


def main(redirect_uri: str) -> None:
    call_command("migrate", verbosity=0)
    call_command("creatersakey", verbosity=0)
    client = Client.objects.create(
        name="Evaluation site",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_type="confidential",
        redirect_uris=[redirect_uri],
        require_consent=False,
        jwt_alg="RS256",
        scope=["openid", "email", "profile", "groups"],
    )
    client.response_types.add(ResponseType.objects.get(value="code"))
    for username, groups in PEOPLE.items():
        user = User.objects.create_user(username, email=f"{username}@hospital.test", password=PASSWORD)
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in groups))


if __name__ == "__main__":
    main(sys.argv[1])
