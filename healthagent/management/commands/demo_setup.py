from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from healthagent.accounts import demo_user_ensure
from healthagent.agent.generate import cohort_generate
from healthagent.cohort.importers.synthetic import synthetic_participants
from healthagent.cohort.importing import cohort_import
from healthagent.models import AgentVariant, Cohort
from healthagent.roles import Role

DEMO_COHORT = {"name": "Demo cohort", "participants": 50, "days": 14, "seed": 2026}
DEMO_PRETRAINING = {"size": "tiny", "participants": 200, "days": 3, "steps": 1500, "batch_size": 16, "learning_rate": 0.001,
                    "mask_strategy": "aim", "checkpoint_every": 100, "seed": 0}
DEMO_SENSORLM = {"size": "tiny", "loss": "clip", "caption_levels": ["semantic", "structural", "statistical"], "participants": 200, "days": 3,
                 "steps": 300, "batch_size": 32, "learning_rate": 0.002, "evaluate": True, "evaluation_participants": 60, "seed": 0}
DEMO_TWIN_TRAINING = {"size": "tiny", "participants": 1000, "days": 730, "steps": 600, "batch_size": 16, "learning_rate": 0.002,
                      "block_size": 256, "checkpoint_every": 100, "seed": 0}
DEMO_ACCOUNTS = (
    ("clinician", Role.CLINICIAN, "clinician-demo"),
    ("researcher", Role.RESEARCHER, "researcher-demo"),
    ("admin", Role.ADMIN, "admin-demo"),
)


class Command(BaseCommand):
    help = "Prepare the demo: accounts for each role and a synthetic cohort (idempotent). Never run it on a production site."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args, url, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates accounts with known passwords; it refuses to run in production.")
        for username, role, password in DEMO_ACCOUNTS:
            demo_user_ensure(username=username, role=role, password=password)
        if not Cohort.objects.filter(name=DEMO_COHORT["name"]).exists():
            participants, report = synthetic_participants(
                participants=DEMO_COHORT["participants"], days=DEMO_COHORT["days"], seed=DEMO_COHORT["seed"]
            )
            summary = cohort_import(name=DEMO_COHORT["name"], source=Cohort.Source.SYNTHETIC, participants=participants,
                                    source_report=report, description="Simulated participants for the demo.")
            self.stdout.write(f"Imported {summary.imported} synthetic participants into {DEMO_COHORT['name']!r}.")
        cohort = Cohort.objects.get(name=DEMO_COHORT["name"])
        grounded = AgentVariant.objects.get(name="grounded agent")
        counts = cohort_generate(cohort=cohort, variants=[grounded])
        self.stdout.write(f"Grounded recommendations: {counts['succeeded']} generated, {counts['kept']} already there.")
        self._demo_studies(cohort)
        # The language-model variants take minutes on a CPU: the worker generates them after the site is up.
        from modeling.jobs import job_queue
        from modeling.models import Job


        for variant in AgentVariant.objects.exclude(backend="grounded").order_by("name"):
            if Job.objects.filter(kind="generate_recommendations", config__variants=[variant.pk], state__in=["queued", "running"]).exists():
                continue
            job = job_queue(kind_name="generate_recommendations", config={"cohort": cohort.pk, "variants": [variant.pk]})
            self.stdout.write(f"Queued job #{job.pk}: recommendations of {variant.name!r}, generated in the background (see Jobs).")
        if not Job.objects.filter(kind="lsm_pretrain").exists():
            job = job_queue(kind_name="lsm_pretrain", config={**DEMO_PRETRAINING, "predict_cohort": cohort.pk})
            self.stdout.write(f"Queued job #{job.pk}: pre-training of a tiny wearable foundation model (a few minutes; watch its loss), "
                              "then its predictions for the demo cohort.")
        if not Job.objects.filter(kind="sensorlm_train").exists():
            job = job_queue(kind_name="sensorlm_train", config={**DEMO_SENSORLM, "index_cohort": cohort.pk})
            self.stdout.write(f"Queued job #{job.pk}: a tiny sensor-language model, then an index of the demo cohort's days for “Find days”.")
        if not Job.objects.filter(kind="twin_train").exists():
            job = job_queue(kind_name="twin_train", config={**DEMO_TWIN_TRAINING, "simulate_cohort": cohort.pk})
            self.stdout.write(f"Queued job #{job.pk}: training of a tiny digital twin, then a simulation of the demo cohort (see Digital twin).")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo site: {url}"))
        self.stdout.write("Demo accounts (username / password):")
        for username, role, password in DEMO_ACCOUNTS:
            self.stdout.write(f"  {role.label:<11} {username} / {password}")
        self.stdout.write("")

    def _demo_studies(self, cohort):
        """Two open studies for the demo clinician: items of the language-model variants become
        available as the worker generates their answers."""
        from django.contrib.auth.models import User

        from evaluation.models import Rubric, Study
        from evaluation.services import StudySpec, study_create, study_set_status

        clinician = User.objects.get(username="clinician")
        researcher = User.objects.get(username="researcher")
        rubric = Rubric.objects.get(name="Relevance, context awareness, safety (1-5)")
        variants = {variant.name: variant for variant in AgentVariant.objects.all()}
        for name, mode, chosen, sample in (
            ("Demo: rate the agent's answers", "absolute", ["grounded agent", "LLM only"], 15),
            ("Demo: which answer is better?", "pairwise", ["grounded agent", "LLM only"], 10),
        ):
            if Study.objects.filter(name=name).exists():  # set up by an earlier run: left as a researcher may have changed it
                continue
            spec = StudySpec(name=name, mode=mode, rubric=rubric, cohort=cohort, variants=[variants[v] for v in chosen], raters_per_item=1,
                             clinicians=[clinician], participants=sample, seed=7, show_captions=True,
                             instructions="Read the participant's data, then rate the answer on each dimension. Press ? for keyboard shortcuts.")
            study_set_status(study=study_create(spec=spec, user=researcher), status="open")
            self.stdout.write(f"Opened the study {name!r} for the demo clinician.")
