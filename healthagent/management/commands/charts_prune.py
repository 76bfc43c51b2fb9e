"""Remove the chart files of older chart versions (healthagent.cohort.charts.chart_versions_prune): run at each
deployment (deploy/prod.sh does), as a chart version changes only with the code."""

from django.core.management.base import BaseCommand

from healthagent.cohort.charts import chart_versions_prune


class Command(BaseCommand):
    help = "Remove the chart folders of older chart versions under CHART_ROOT."

    def handle(self, *args, **options):
        removed = chart_versions_prune()
        self.stdout.write(f"{len(removed)} old chart version folder(s) removed" + "".join(f"\n  {p}" for p in removed))
