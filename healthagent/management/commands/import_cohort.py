import time

from django.core.management.base import BaseCommand, CommandError

from healthagent.cohort.importing import CohortImportError, cohort_import
from healthagent.cohort.sources import SOURCES, source_participants


class Command(BaseCommand):
    help = "Import a cohort (anonymized at the door). Sources: synthetic, csv, fitbit, apple."

    def add_arguments(self, parser):
        parser.add_argument("source", choices=sorted(SOURCES))
        parser.add_argument(
            "--name", required=True, help="Cohort name; importing into an existing cohort adds new participants."
        )
        parser.add_argument(
            "--k",
            type=int,
            default=None,
            help=(
                "k of the k-anonymity: groups of age band and sex, clinical events and measurements are generalized "
                "until k participants share each, and participants in a group still smaller are dropped "
                "(default and minimum: ANONYMIZATION_MIN_K)."
            ),
        )
        parser.add_argument(
            "--allow-k-below-minimum",
            action="store_true",
            help="Allow a --k below ANONYMIZATION_MIN_K (k = 1 keeps no group anonymity); the audit log records it.",
        )
        parser.add_argument("--description", default="")
        parser.add_argument("paths", nargs="*", help="Files or folders to import (csv, fitbit, apple).")
        parser.add_argument("--participants", type=int, default=50, help="synthetic: how many participants")
        parser.add_argument("--days", type=int, default=14, help="synthetic: minute-level days per participant")
        parser.add_argument("--history-days", type=int, default=365, help="synthetic: days of sparse measurements")
        parser.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
        parser.add_argument(
            "--demographics", help="csv: a participants file with participant_id, age (or birth_date), sex"
        )
        parser.add_argument(
            "--measurements", help="csv: sparse measurements with participant_id, timestamp, name, value, unit"
        )
        parser.add_argument(
            "--timezone", help="csv: the participants' time zone, to convert timestamps written in UTC (Z)"
        )

    def handle(self, *args, source, name, k, allow_k_below_minimum, description, **options):
        started = time.perf_counter()
        try:
            participants, report = source_participants(source, options)
            summary = cohort_import(
                name=name,
                source=source,
                participants=participants,
                source_report=report,
                k=k,
                allow_k_below_minimum=allow_k_below_minimum,
                description=description,
                via="import_cohort command",
            )
        except CohortImportError as error:
            raise CommandError(f"Import failed, nothing was kept: {error}") from error
        seconds = time.perf_counter() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Cohort {summary.cohort.name!r}: {summary.imported} participants imported, "
                f"{summary.report['k_anonymity']['dropped']} dropped (in a group smaller than k), "
                f"{summary.already_present} already present ({seconds:.1f} s)."
            )
        )
        for key, value in summary.report.items():
            self.stdout.write(f"  {key}: {value}")
