from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from evaluation import (
            chart_jobs,  # noqa: F401 - registers the "Build a study's charts" kind
            judge_jobs,  # noqa: F401 - registers the "Judge a study's answers" kind
        )
        from evaluation.models import Dimension, Rubric, Study
        from evaluation.selectors import studies_visible_to
        from evaluation.services import invitation_enrol
        from healthagent.invitations import acceptance_hook_register
        from healthagent.webhooks import webhook_study_access_register

        post_delete.connect(_study_deleted, sender=Study, dispatch_uid="evaluation.study_webhooks")
        post_save.connect(_dimension_changed, sender=Dimension, dispatch_uid="evaluation.rubric_version_save")
        post_delete.connect(_dimension_changed, sender=Dimension, dispatch_uid="evaluation.rubric_version_delete")
        # A saved rubric writes back the version it was read with, which a dimension's change may have renewed since.
        post_save.connect(_rubric_saved, sender=Rubric, dispatch_uid="evaluation.rubric_version_rubric")
        acceptance_hook_register(invitation_enrol)
        # A study's webhook endpoint hears its events only while its owner may read the study.
        webhook_study_access_register(lambda user, study_id: studies_visible_to(user=user).filter(pk=study_id).exists())


def _study_deleted(sender, instance, **kwargs) -> None:
    """A deleted study's webhook endpoints go with it (the core layer keeps only the study's id)."""
    from healthagent.webhooks import webhook_endpoints_of_study_delete

    webhook_endpoints_of_study_delete(study_id=instance.pk)


def _dimension_changed(sender, instance, **kwargs) -> None:
    """A rubric whose dimensions change gets a new version: every web process reads them again."""
    _renew_rubric_version(instance.rubric_id)


def _rubric_saved(sender, instance, **kwargs) -> None:
    _renew_rubric_version(instance.pk)


def _renew_rubric_version(rubric_id: int) -> None:
    from evaluation.models import Rubric, new_rubric_version

    Rubric.objects.filter(pk=rubric_id).update(version=new_rubric_version())
