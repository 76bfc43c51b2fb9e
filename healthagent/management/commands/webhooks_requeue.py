"""Queue again the webhook deliveries whose message was lost (the broker down when the event happened, a worker
gone); for cron on a production host, e.g. every five minutes. Sends nothing twice (healthagent.webhooks)."""

from django.core.management.base import BaseCommand

from healthagent.webhooks import OVERDUE_GRACE_S, webhook_deliveries_requeue


class Command(BaseCommand):
    help = "Queue again pending webhook deliveries overdue by more than --grace seconds."

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=float, default=OVERDUE_GRACE_S, help="seconds overdue (default 300)")

    def handle(self, *args, grace: float, **options):
        count = webhook_deliveries_requeue(grace_s=grace)
        self.stdout.write(f"{count} webhook deliveries queued again")
