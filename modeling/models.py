"""Jobs (every long piece of work) and the checkpoints they produce."""

from django.conf import settings
from django.db import models


class Job(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        # The run ended, but some of its parts did not (an answer that failed the checks...): listed in ``failures``.
        SUCCEEDED_WITH_FAILURES = "succeeded_with_failures", "Succeeded with failures"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (State.SUCCEEDED, State.SUCCEEDED_WITH_FAILURES, State.FAILED, State.CANCELLED)
    # A retry of a job with failures redoes only what failed (finished parts are kept by the kinds).
    RETRYABLE = (State.SUCCEEDED_WITH_FAILURES, State.FAILED, State.CANCELLED)

    kind = models.CharField(max_length=40)
    config = models.JSONField(default=dict)
    state = models.CharField(max_length=30, choices=State.choices, default=State.QUEUED)
    queue = models.CharField(max_length=10, default="cpu")
    priority = models.PositiveSmallIntegerField(
        default=0, help_text="Higher runs first; jobs of equal priority run in the order they were queued."
    )
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    message = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="The latest metrics.")
    curve = models.JSONField(
        default=list, blank=True, help_text="Metrics over steps, for the live charts (thinned past 2,000 points)."
    )
    log_tail = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    failures = models.JSONField(
        default=list, blank=True, help_text='Parts of the run that failed: [{"item": ..., "reason": ...}].'
    )
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Deliveries to a worker (more than one after a worker died)."
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    run_by_task_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The delivery (Celery task id) that runs the job: the first free one of its queue.",
    )
    worker_host = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=40, blank=True)
    queued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="follow_ups",
        help_text="The job that queued this one with its result (a trained model's predictions...).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "kind"]), models.Index(fields=["queue", "state", "priority"])]
        # A re-delivered job runs its final step again: it must find its follow-up, not queue a second one.
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "kind"],
                condition=models.Q(parent__isnull=False),
                name="one_follow_up_per_parent_and_kind",
            )
        ]

    def __str__(self):
        return f"{self.kind} #{self.pk}"

    @property
    def finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def retryable(self) -> bool:
        return self.state in self.RETRYABLE


class Checkpoint(models.Model):
    family = models.CharField(max_length=40)
    size = models.CharField(max_length=20)
    path = models.CharField(max_length=500, help_text="A directory with config.json and model weights.")
    metrics = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoints")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.family}-{self.size} #{self.pk}"


class Prediction(models.Model):
    """A foundation model's estimate of one downstream task for one participant, with a 90 % interval.

    For classification ``estimate`` is the probability of ``label`` (the most likely class); for
    regression it is the value in the task's unit. ``details`` holds the probe's held-out quality,
    the class probabilities and the task's description and unit.
    """

    participant = models.ForeignKey("healthagent.Participant", on_delete=models.CASCADE, related_name="predictions")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="predictions")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions")
    task = models.CharField(max_length=40)
    kind = models.CharField(max_length=12)
    label = models.CharField(max_length=40, blank=True)
    estimate = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "task"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "checkpoint", "task"], name="one_prediction_per_task_and_model"
            )
        ]

    def __str__(self):
        return f"{self.task} of participant {self.participant_id}: {self.estimate:.3g}"


class SimulationRun(models.Model):
    """One participant's digital-twin simulation: sampled futures with and without each intervention.

    ``results`` holds, per arm (``"none"`` and each intervention), the quantile bands of every
    biomarker on a grid of days, the risk of each endpoint within the horizon, and for each
    intervention the predicted change of every biomarker at the horizon (mean and 90 % interval).
    """

    participant = models.ForeignKey("healthagent.Participant", on_delete=models.CASCADE, related_name="simulations")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="simulations")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="simulations")
    interventions = models.JSONField(default=list)
    horizon_days = models.PositiveIntegerField()
    samples = models.PositiveIntegerField()
    results = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["participant", "created_at"])]

    def __str__(self):
        return f"simulation of participant {self.participant_id} ({', '.join(self.interventions) or 'no intervention'})"
