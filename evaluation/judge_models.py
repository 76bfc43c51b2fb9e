"""Per-item rubric criteria (HealthBench style) and a language-model judge's grades (issue 22): what a study adds to
its rubric to spend clinicians' time where it counts. Registered with the evaluation app through evaluation.models."""

from django.db import models
from django.db.models import Q

from evaluation.models import Study, StudyItem


class Criterion(models.Model):
    """A rubric criterion of one item in the HealthBench style: a sentence a good answer meets (or, with negative
    points, one a bad answer meets), its points and its category. Clinicians grade each met or not met; the item's
    criterion score is the points met over the positive points possible, clipped to 0-1 (evaluation.criteria).
    Written while the study is a draft, so a rating's grades (by position) always mean the same criteria."""

    class Category(models.TextChoices):
        ACCURACY = "accuracy", "Accuracy"
        COMPLETENESS = "completeness", "Completeness"
        CONTEXT_AWARENESS = "context_awareness", "Context awareness"
        COMMUNICATION = "communication", "Communication"
        SAFETY = "safety", "Safety"

    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="criteria")
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=400)
    points = models.SmallIntegerField(help_text="Positive for what a good answer does, negative for a fault; not 0.")
    category = models.CharField(max_length=20, choices=Category.choices)

    class Meta:
        ordering = ["item", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="unique_criterion_position"),
            models.CheckConstraint(
                condition=Q(points__gte=-10, points__lte=10) & ~Q(points=0), name="criterion_points_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"Criterion {self.position} of item #{self.item_id}"


class JudgeRun(models.Model):
    """One grading of a study's items by a language-model judge (evaluation.judge): the backend, the model, the prompt
    version, and counts. Its grades are kept apart from the clinicians' ratings, shown to researchers only, and never
    counted as ratings."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="judge_runs")
    job = models.ForeignKey("modeling.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    backend = models.CharField(max_length=40)
    model = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=40)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    graded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"Judge run #{self.pk} of study #{self.study_id}"


class JudgeGrade(models.Model):
    """The judge's grade of one item: scores by dimension and criteria met, or a failure with its reason (an unusable
    answer is never a score)."""

    class Status(models.TextChoices):
        GRADED = "graded", "Graded"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="grades")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="judge_grades")
    status = models.CharField(max_length=8, choices=Status.choices)
    scores = models.JSONField(default=dict, blank=True)
    criteria = models.JSONField(default=dict, blank=True)
    probabilities = models.JSONField(
        default=dict,
        blank=True,
        help_text="The judge's probability that each criterion is met (0-1), where it gave one.",
    )
    reason = models.CharField(max_length=500, blank=True, help_text="Why the grade failed.")
    raw = models.TextField(blank=True, help_text="The judge's reply as received (at most 4,000 characters).")
    seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["run", "item"]
        constraints = [models.UniqueConstraint(fields=["run", "item"], name="one_judge_grade_per_run_and_item")]

    def __str__(self) -> str:
        return f"Judge grade of item #{self.item_id} ({self.status})"
