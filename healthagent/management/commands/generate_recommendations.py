from django.core.management.base import BaseCommand, CommandError

from healthagent.agent.generate import AgentError, cohort_generate
from healthagent.models import AgentVariant, Cohort


class Command(BaseCommand):
    help = "Generate the agent's recommendations for every participant of a cohort, for one or more variants."

    def add_arguments(self, parser):
        parser.add_argument("--cohort", required=True, help="Cohort name.")
        parser.add_argument(
            "--variant", action="append", dest="variants", help="Variant name (repeat for several; default: all)."
        )
        parser.add_argument("--regenerate", action="store_true", help="Replace recommendations that already succeeded.")
        parser.add_argument(
            "--queue", action="store_true", help="Queue it as a job (shown on the Jobs page) instead of running here."
        )

    def handle(self, *args, cohort, variants, regenerate, queue, **options):
        try:
            cohort_row = Cohort.objects.get(name=cohort)
        except Cohort.DoesNotExist as error:
            raise CommandError(f"There is no cohort named {cohort!r}.") from error
        chosen = list(AgentVariant.objects.filter(name__in=variants)) if variants else list(AgentVariant.objects.all())
        missing = set(variants or []) - {variant.name for variant in chosen}
        if missing:
            raise CommandError(
                f"Unknown variant(s): {', '.join(sorted(missing))}. Known: {', '.join(AgentVariant.objects.values_list('name', flat=True))}."
            )
        if queue:
            from modeling.jobs import JobError, job_queue

            try:
                job = job_queue(
                    kind_name="generate_recommendations",
                    config={"cohort": cohort_row.pk, "variants": [v.pk for v in chosen], "regenerate": regenerate},
                )
            except JobError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"Queued job #{job.pk} on the {job.queue} queue.")
            return

        def report(position, total, message):
            if position == total or position % 10 == 0:
                self.stdout.write(f"  {message}")

        try:
            counts = cohort_generate(cohort=cohort_row, variants=chosen, regenerate=regenerate, progress=report)
        except AgentError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Done: {counts}"))
