from django.core.management.base import BaseCommand

from modeling.models import Job


class Command(BaseCommand):
    help = "List recent jobs with their state and progress."

    def add_arguments(self, parser):
        parser.add_argument("--state", choices=Job.State.values)
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, state, limit, **options):
        jobs = Job.objects.all()
        if state:
            jobs = jobs.filter(state=state)
        for job in jobs[:limit]:
            self.stdout.write(f"#{job.pk:<5} {job.kind:<26} {job.state:<10} {job.progress:>5.0%}  {job.queue}/{job.device or '-'}  {job.message}")
