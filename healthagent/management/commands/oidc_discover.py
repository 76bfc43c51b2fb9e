"""Print the OIDC_OP_* settings of an identity provider from its discovery document, to paste into the environment."""

import httpx
from django.core.management.base import BaseCommand, CommandError

KEYS = {
    "authorization_endpoint": "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "OIDC_OP_TOKEN_ENDPOINT",
    "userinfo_endpoint": "OIDC_OP_USER_ENDPOINT",
    "jwks_uri": "OIDC_OP_JWKS_ENDPOINT",
}


class Command(BaseCommand):
    help = "Read ISSUER/.well-known/openid-configuration and print the OIDC_OP_* lines for the environment."

    def add_arguments(self, parser):
        parser.add_argument("issuer", help="e.g. https://login.hospital.org/realms/staff")

    def handle(self, *args, issuer: str, **options):
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = httpx.get(url, timeout=10).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as error:
            raise CommandError(f"no discovery document at {url}: {error}") from error
        missing = [key for key in KEYS if key not in document]
        if missing:
            raise CommandError(f"the discovery document at {url} lacks {', '.join(missing)}")
        for key, name in KEYS.items():
            self.stdout.write(f"{name}={document[key]}")
        algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        self.stdout.write(f"OIDC_RP_SIGN_ALGO={'RS256' if 'RS256' in algorithms else algorithms[0]}")
