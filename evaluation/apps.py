from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"

    def ready(self):
        from evaluation import judge_jobs  # noqa: F401 - registers the "Judge a study's answers" kind
