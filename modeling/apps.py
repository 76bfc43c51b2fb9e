from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"

    def ready(self):
        from healthagent.celery import before_workers_start_register
        from healthagent.cohort.find_days import find_days_register
        from healthagent.cohort.panels import participant_panel_register
        from healthagent.health import queue_activity_register
        from modeling.find_days import days_matching
        from modeling.jobs import jobs_requeue_interrupted_lines, queue_activity
        from modeling.selectors import predictions_panel, twin_panel

        queue_activity_register(queue_activity)  # the system page tells a busy worker from none
        before_workers_start_register(jobs_requeue_interrupted_lines)  # serve re-queues what a stopped worker left
        participant_panel_register(predictions_panel)  # the participant page shows the foundation model's estimates
        participant_panel_register(twin_panel)  # and the way to its simulated futures
        find_days_register(days_matching)  # Find days ranks with the newest sensor-language model's index
