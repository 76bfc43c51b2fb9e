from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluation.backup import studies_import
from evaluation.services import EvaluationError


class Command(BaseCommand):
    help = "Restore studies written by export_studies, atomically; studies already present (same name) are skipped."

    def add_arguments(self, parser):
        parser.add_argument("source", type=Path, help="the export folder (or its studies.json)")

    def handle(self, *args, source, **options):
        try:
            counts = studies_import(source=source)
        except (EvaluationError, KeyError) as error:
            raise CommandError(f"Restore failed, nothing was written: {error}") from error
        self.stdout.write(
            self.style.SUCCESS("Restored " + ", ".join(f"{value} {key}" for key, value in counts.items()))
        )
