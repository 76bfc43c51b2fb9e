import getpass
import os

from django.core.management.base import BaseCommand, CommandError

from healthagent.accounts import AccountError, user_create_with_role
from healthagent.roles import Role


class Command(BaseCommand):
    help = "Create a user with one role (clinician, researcher or admin)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-env",
            metavar="VARIABLE",
            help="Read the password from this environment variable instead of prompting.",
        )

    def handle(self, *args, username, role, email, password_env, **options):
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"The environment variable {password_env} is empty or not set.")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            user = user_create_with_role(
                username=username, role=Role(role), password=password, email=email, via="create_user command"
            )
        except AccountError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Created {user.username} with the role {role}."))
