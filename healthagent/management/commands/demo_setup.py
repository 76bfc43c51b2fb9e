from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from healthagent.accounts import demo_user_ensure
from healthagent.roles import Role

DEMO_ACCOUNTS = (
    ("clinician", Role.CLINICIAN, "clinician-demo"),
    ("researcher", Role.RESEARCHER, "researcher-demo"),
    ("admin", Role.ADMIN, "admin-demo"),
)


class Command(BaseCommand):
    help = "Prepare the demo: accounts for each role (idempotent). Never run it on a production site."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args, url, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates accounts with known passwords; it refuses to run in production.")
        for username, role, password in DEMO_ACCOUNTS:
            demo_user_ensure(username=username, role=role, password=password)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo site: {url}"))
        self.stdout.write("Demo accounts (username / password):")
        for username, role, password in DEMO_ACCOUNTS:
            self.stdout.write(f"  {role.label:<11} {username} / {password}")
        self.stdout.write("")
