from pathlib import Path

from django.core.management.base import BaseCommand

from evaluation.backup import FILE_NAME, studies_export


class Command(BaseCommand):
    help = "Export studies with their items, assignments, ratings and revisions to DIR/studies.json (a logical backup)."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, type=Path, metavar="DIR")
        parser.add_argument(
            "--study", type=int, action="append", dest="study_ids", metavar="ID", help="only this study (repeatable)"
        )

    def handle(self, *args, output, study_ids, **options):
        counts = studies_export(output=output, study_ids=study_ids)
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {output / FILE_NAME}: " + ", ".join(f"{value} {key}" for key, value in counts.items())
            )
        )
