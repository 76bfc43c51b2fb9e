import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from modeling.jobs import JobError, job_queue


class Command(BaseCommand):
    help = "Queue a job: KIND with a JSON config file (the same fields as the kind's form in the site)."

    def add_arguments(self, parser):
        parser.add_argument("kind")
        parser.add_argument("--config", help="A JSON file with the job's config; omitted: the kind's defaults.")

    def handle(self, *args, kind, config, **options):
        try:
            data = json.loads(Path(config).read_text()) if config else {}
        except (OSError, json.JSONDecodeError) as error:
            raise CommandError(f"{config}: {error}") from error
        try:
            job = job_queue(kind_name=kind, config=data, via="queue_job command")
        except JobError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Queued job #{job.pk} ({job.kind}) on the {job.queue} queue."))
