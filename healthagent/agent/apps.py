from django.apps import AppConfig


class AgentConfig(AppConfig):
    """The personal health agent: it plugs into the job framework below it by registration."""

    name = "healthagent.agent"
    label = "agent"
    verbose_name = "Health agent: answers"

    def ready(self):
        from healthagent.agent import jobs  # noqa: F401 - registers the "Generate recommendations" kind
        from healthagent.agent.backends.registry import json_completion
        from modeling.jobs import job_language_model_register

        job_language_model_register(json_completion)  # the head search's language-model proposer
