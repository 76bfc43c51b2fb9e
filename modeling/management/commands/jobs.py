from django.core.management.base import BaseCommand

from modeling.jobs import jobs_requeue_interrupted_lines
from modeling.models import Job


class Command(BaseCommand):
    help = "List recent jobs with their state and progress."

    def add_arguments(self, parser):
        parser.add_argument("--state", choices=Job.State.values)
        parser.add_argument("--limit", type=int, default=20)
        parser.add_argument(
            "--requeue-interrupted",
            nargs="+",
            metavar="QUEUE",
            help="Queue again the jobs left running on these queues (only when none of their workers runs).",
        )

    def handle(self, *args, state, limit, requeue_interrupted=None, **options):
        if requeue_interrupted:
            for line in jobs_requeue_interrupted_lines(tuple(requeue_interrupted)):
                self.stdout.write(line)
            return
        jobs = Job.objects.all()
        if state:
            jobs = jobs.filter(state=state)
        for job in jobs[:limit]:
            self.stdout.write(
                f"#{job.pk:<5} {job.kind:<26} {job.state:<23} {job.progress:>5.0%}  {job.queue}/{job.device or '-'}  {job.message}"
            )
