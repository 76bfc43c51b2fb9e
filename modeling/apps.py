from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"

    def ready(self):
        from healthagent.health import queue_activity_register
        from modeling.jobs import queue_activity

        queue_activity_register(queue_activity)  # the system page tells a busy worker from none
