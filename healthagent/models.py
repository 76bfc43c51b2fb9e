"""Cohorts and their anonymized participants.

Nothing here identifies a person: participants are keyed pseudonyms, ages are 5-year bands, days
are indices from the participant's first day (the calendar dates are never stored). Minute-level
signals live in Parquet files under ``TRAJECTORY_ROOT`` (see ``healthagent/cohort/store.py``);
the database holds what is sparse or daily.
"""

import contextlib
import re
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction

from healthagent.roles import Role

# An agent's language-model server gets its API key from the workers' environment variable its config names
# (``api_key_env``), never from the config itself: only names with this prefix, so a variant can never send the site's
# own secrets (SECRET_KEY, ANONYMIZATION_KEY, DATABASE_URL...) to a server as a bearer token.
LLM_KEY_ENV_PREFIX = "HEALTHAGENT_LLM_"
SITE_SECRETS = frozenset(
    {"SECRET_KEY", "ANONYMIZATION_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_HOST_PASSWORD", "EMAIL_HOST_USER"}
)
SECRET_CONFIG_KEYS = frozenset({"api_key", "token", "password", "secret"})


def llm_server_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a language-model server's config (an agent variant's, a judge's), or None: an API key
    written into it, a key variable outside ``HEALTHAGENT_LLM_*`` or naming one of the site's secrets, a server outside
    ``settings.LLM_ALLOWED_HOSTS``. Nested configs (a phrased variant's ``language_model``) are checked too."""
    for key, value in config.items():
        if isinstance(value, dict) and (problem := llm_server_problem(value)):
            return problem
        if key in SECRET_CONFIG_KEYS and value:
            return (
                f"{key} must not be written into a config (it would be stored and backed up in plain text): put it in "
                f"an environment variable of the workers named {LLM_KEY_ENV_PREFIX}... and give its name as api_key_env"
            )
    name = config.get("api_key_env") or ""
    if name in SITE_SECRETS:
        return f"api_key_env {name} is one of the site's own secrets: it is never sent to a model server"
    if name and not re.fullmatch(re.escape(LLM_KEY_ENV_PREFIX) + r"[A-Z0-9_]+", name):
        return f"api_key_env must name an environment variable starting with {LLM_KEY_ENV_PREFIX} (not {name!r})"
    base_url = config.get("base_url") or ""
    allowed = settings.LLM_ALLOWED_HOSTS
    if base_url and allowed:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        if host not in allowed and f"{host}:{parts.port}" not in allowed:
            return f"the model server {host or base_url!r} is not among the allowed hosts (LLM_ALLOWED_HOSTS)"
    return None


class Cohort(models.Model):
    class Source(models.TextChoices):
        SYNTHETIC = "synthetic", "Synthetic (physiology simulator)"
        CSV = "csv", "CSV / Parquet"
        FITBIT = "fitbit", "Fitbit (Google Takeout)"
        APPLE = "apple", "Apple Health export"

    name = models.CharField(max_length=120, unique=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    description = models.TextField(blank=True)
    k_anonymity = models.PositiveSmallIntegerField(
        default=5, help_text="Quasi-identifier groups smaller than this are generalized."
    )
    import_report = models.JSONField(default=dict, blank=True, help_text="What each import kept, dropped and why.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Participant(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        UNKNOWN = "unknown", "Unknown"

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="participants")
    pseudonym = models.CharField(max_length=24, help_text="Keyed hash of the source identifier (HMAC-SHA256).")
    age_band = models.CharField(
        max_length=8, help_text="5-year band, '85+' top-coded, '*' when suppressed for k-anonymity."
    )
    sex = models.CharField(max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    history_days = models.PositiveIntegerField(default=0, help_text="Days covered by measurements and events.")
    minute_start_day = models.PositiveIntegerField(default=0, help_text="Day index of the first minute-level day.")
    minute_days = models.PositiveIntegerField(
        default=0, help_text="Number of minute-level days in the trajectory file."
    )
    start_weekday = models.PositiveSmallIntegerField(
        default=0, help_text="Weekday of the first minute-level day, 0 = Monday."
    )
    trajectory_path = models.CharField(max_length=255, blank=True, help_text="Relative to TRAJECTORY_ROOT.")
    ground_truth = models.JSONField(
        default=dict, blank=True, help_text="Synthetic cohorts only: latent traits and task labels."
    )

    class Meta:
        ordering = ["cohort", "pseudonym"]
        constraints = [models.UniqueConstraint(fields=["cohort", "pseudonym"], name="unique_pseudonym_per_cohort")]

    def __str__(self):
        return self.pseudonym


class DailySummary(models.Model):
    """One participant-day, derived from the minute-level signals."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="daily_summaries")
    day_index = models.PositiveIntegerField()
    wear_minutes = models.PositiveIntegerField()
    steps = models.PositiveIntegerField(null=True)
    active_minutes = models.PositiveIntegerField(null=True, help_text="Minutes at 3 MET or more.")
    sleep_minutes = models.PositiveIntegerField(null=True, help_text="Minutes asleep in the night ending this day.")
    resting_heart_rate_bpm = models.FloatField(null=True)
    hrv_rmssd_ms = models.FloatField(null=True, help_text="Mean RMSSD during sleep.")
    spo2_mean_pct = models.FloatField(null=True)
    respiration_rate_bpm = models.FloatField(null=True)
    skin_temperature_c = models.FloatField(null=True)
    stress_score = models.FloatField(null=True)

    class Meta:
        ordering = ["participant", "day_index"]
        constraints = [models.UniqueConstraint(fields=["participant", "day_index"], name="one_summary_per_day")]

    def __str__(self) -> str:
        return f"Participant #{self.participant_id}, day {self.day_index}"


class Measurement(models.Model):
    """A sparse measurement: a lab value, a blood pressure, a weight, a CGM daily summary."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="measurements")
    day_index = models.IntegerField()
    name = models.CharField(max_length=40)
    value = models.FloatField()
    unit = models.CharField(max_length=20)
    modality = models.CharField(max_length=20)

    class Meta:
        ordering = ["participant", "day_index", "name"]
        indexes = [models.Index(fields=["participant", "name", "day_index"])]

    def __str__(self) -> str:
        return f"{self.name} {self.value:g} {self.unit} (participant #{self.participant_id}, day {self.day_index})"


class Event(models.Model):
    """Something that happened: an activity bout or a sleep period (with minutes), or a diet,
    medication, intervention, diagnosis or endpoint event (a day)."""

    class Kind(models.TextChoices):
        ACTIVITY = "activity"
        SLEEP = "sleep"
        STRESS = "stress"
        ILLNESS = "illness"
        DIET = "diet"
        MEDICATION = "medication"
        INTERVENTION = "intervention"
        DIAGNOSIS = "diagnosis"
        ENDPOINT = "endpoint"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=40)
    day_index = models.IntegerField()
    start_minute = models.IntegerField(
        null=True, help_text="From the first minute-level minute; minute-level events only."
    )
    end_minute = models.IntegerField(null=True)
    detail = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["participant", "day_index", "start_minute"]
        indexes = [models.Index(fields=["participant", "kind", "day_index"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (participant #{self.participant_id}, day {self.day_index})"

    @property
    def duration_minutes(self) -> int | None:
        if self.start_minute is None or self.end_minute is None:
            return None
        return self.end_minute - self.start_minute


class AgentVariant(models.Model):
    """A configuration of the personal health agent that a study can compare blind."""

    class Backend(models.TextChoices):
        GROUNDED = "grounded", "Grounded (offline, cites the data)"
        TRANSFORMERS = "transformers", "Local language model (transformers)"
        OPENAI_HTTP = "openai_http", "OpenAI-compatible HTTP server"
        GROUNDED_PHRASED = "grounded_phrased", "Grounded, phrased by a language model"

    name = models.CharField(max_length=80, unique=True)
    backend = models.CharField(max_length=20, choices=Backend.choices)
    config = models.JSONField(default=dict, blank=True, help_text="Backend settings, validated by the backend.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self) -> None:
        if isinstance(self.config, dict) and (problem := llm_server_problem(self.config)):
            raise ValidationError({"config": problem})


class Recommendation(models.Model):
    """One generation of one variant for one participant (and question): the answer or why there is none."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # the backend gave nothing usable: empty, too long, garbled, timed out
        BLOCKED = "blocked", "Blocked by the safety screen"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="recommendations")
    variant = models.ForeignKey(AgentVariant, on_delete=models.PROTECT, related_name="recommendations")
    question = models.CharField(max_length=500, blank=True, help_text="The participant's question or goal, if any.")
    status = models.CharField(max_length=12, choices=Status.choices)
    text = models.TextField(blank=True, help_text="The answer as shown (markdown), after the safety screen.")
    raw_text = models.TextField(blank=True, help_text="What the backend returned, before the safety screen.")
    items = models.JSONField(
        default=list, blank=True, help_text="Structured recommendations with the numbers they cite."
    )
    context = models.JSONField(default=dict, help_text="Exactly what the agent saw.")
    safety_flags = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    backend_metadata = models.JSONField(default=dict, blank=True, help_text="Model, latency, tokens.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "variant", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "variant", "question"], name="one_recommendation_per_question"
            )
        ]

    def __str__(self):
        return f"{self.variant} for {self.participant} ({self.status})"


class AuditLogError(Exception):
    """The audit log is append-only: an entry is never changed or deleted."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogError("audit entries cannot be changed")

    def delete(self):
        raise AuditLogError("audit entries cannot be deleted")


class AuditEntry(models.Model):
    """Who did what to which object, when: one row per administrative action, never changed.

    Written by :func:`healthagent.audit.audit_record` inside the transaction of the action itself,
    so an action and its entry commit together or not at all.
    """

    class Action(models.TextChoices):
        JOB_QUEUED = "job.queued", "Job queued"
        JOB_CANCELLED = "job.cancelled", "Job cancelled"
        JOB_RETRIED = "job.retried", "Job retried"
        STUDY_CREATED = "study.created", "Study created"
        STUDY_OPENED = "study.opened", "Study opened"
        STUDY_CLOSED = "study.closed", "Study closed"
        STUDY_REOPENED = "study.reopened", "Study reopened"
        STUDY_ITEM_DROPPED = "study.item_dropped", "Study item dropped"
        STUDY_ITEM_REGENERATED = "study.item_regenerated", "Study item's answer regenerated"
        STUDY_CHANGED = "study.changed", "Study changed"
        STUDY_DELETED = "study.deleted", "Study deleted"
        STUDY_ITEM_REFERENCE_SET = "study.item_reference_set", "Study item's kind and reference set"
        PROTOCOL_SAVED = "protocol.saved", "Study protocol saved"
        PROTOCOL_LOCKED = "protocol.locked", "Study protocol locked (pre-registered)"
        PROTOCOL_DEVIATION = "protocol.deviation", "Deviation from a locked protocol"
        INCIDENT_OPENED = "incident.opened", "Safety incident opened"
        INCIDENT_VIEWED = "incident.viewed", "Safety incident viewed (raters' ratings unblinded)"
        INCIDENT_DECIDED = "incident.decided", "Safety incident decided"
        STUDY_ADJUDICATORS_SET = "study.adjudicators_set", "Study's safety adjudicators set"
        RATER_CONSENTED = "rater.consented", "Rater consented"
        RATER_DECLINED = "rater.declined", "Rater declined consent"
        RATER_QUALIFIED = "rater.qualified", "Rater passed the qualification"
        RATER_NOT_QUALIFIED = "rater.not_qualified", "Rater failed a qualification attempt"
        RATER_PAUSED = "rater.paused", "Rater paused by quality control"
        RATER_REINSTATED = "rater.reinstated", "Rater reinstated"
        USER_CREATED = "user.created", "User created"
        USER_CHANGED = "user.changed", "User changed"
        USER_ROLES_CHANGED = "user.roles_changed", "User's roles changed"
        USER_DELETED = "user.deleted", "User deleted"
        API_TOKEN_CREATED = "api_token.created", "API token created"
        API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"
        COHORT_IMPORTED = "cohort.imported", "Cohort imported"
        COHORT_CHANGED = "cohort.changed", "Cohort changed"
        COHORT_DELETED = "cohort.deleted", "Cohort deleted"
        VARIANT_CREATED = "variant.created", "Agent variant created"
        VARIANT_CHANGED = "variant.changed", "Agent variant changed"
        VARIANT_DELETED = "variant.deleted", "Agent variant deleted"
        CHECKPOINT_CREATED = "checkpoint.created", "Model checkpoint created"
        CHECKPOINT_CHANGED = "checkpoint.changed", "Model checkpoint changed"
        CHECKPOINT_DELETED = "checkpoint.deleted", "Model checkpoint deleted"
        WEBHOOK_CREATED = "webhook.created", "Webhook endpoint registered"
        INVITATIONS_SENT = "invitations.sent", "Invitations sent"
        INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
        STUDY_RATER_ENROLLED = "study.rater_enrolled", "Rater enrolled in a study"
        WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint removed"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(
        max_length=150, help_text="The actor's username at the time, or how the action was run (a command)."
    )
    action = models.CharField(max_length=40, choices=Action.choices, db_index=True)
    object_type = models.CharField(max_length=80, help_text="app_label.model of the object acted on.")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditLogError("audit entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogError("audit entries cannot be deleted")


class Notification(models.Model):
    """A message to one user in the site (the bell in the navigation); healthagent.notifications sends it, by email
    too when email is configured."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    text = models.CharField(max_length=300)
    url = models.CharField(max_length=300, blank=True, help_text="Where to act on it (a path of this site).")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return f"Notification #{self.pk} to user #{self.user_id}"


class WebhookEndpoint(models.Model):
    """A receiver of signed events (Standard Webhooks): site-wide, or one study's (healthagent.webhooks)."""

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # The signing key, "whsec_" + base64: the receiver needs it to verify, so it is kept as is and shown to whoever
    # manages the endpoint (as Svix and Stripe do), never put in a payload or the audit log.
    secret = models.CharField(max_length=100)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    # The evaluation study whose events it receives; None for every event of the site. An id, not a foreign key: the
    # core layer does not know the evaluation tables (evaluation validates it and deletes a study's endpoints).
    study_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    event_types = models.JSONField(default=list, blank=True, help_text="Event types it receives; empty for all.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        scope = f"study #{self.study_id}" if self.study_id else "site-wide"
        return f"Webhook #{self.pk} ({scope}) to {self.url}"[:200]


class WebhookDelivery(models.Model):
    """One event for one endpoint and its attempts: the same ``message_id`` (webhook-id) on every attempt, so a
    receiver that saw it already can tell."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Of the last attempt.")
    error = models.CharField(max_length=300, blank=True, help_text="Why the last attempt failed.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the next attempt is due: a task that arrives earlier (a duplicate message) leaves it to the one due then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["endpoint", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id} to webhook #{self.endpoint_id}: {self.state}"


class Invitation(models.Model):
    """A one-time link by email that makes its holder an account with ``role`` (healthagent.invitations)."""

    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices)
    display_name = models.CharField(max_length=150, blank=True)
    # The evaluation study to enrol the person in on acceptance (an id: the core layer does not know that table).
    study_id = models.PositiveIntegerField(null=True, blank=True)
    # SHA-256 of the token in the link: the token itself is only in the email.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitations"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["email"])]

    def __str__(self) -> str:
        return f"Invitation #{self.pk} ({self.role})"


class SingleSignOnIdentity(models.Model):
    """The identity provider's subject (``sub``) of a user who signs in through it (healthagent.sso): people are
    matched on it, never on their email address."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity")
    subject = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Single sign-on identity of user #{self.user_id}"


class CohortUpload(models.Model):
    """One file of a cohort export on its way up from a browser, in chunks (healthagent.cohort.uploads). The bytes
    are in a file named by the id (never by the uploaded file's name); it is deleted when its import job ends."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    suffix = models.CharField(max_length=10, help_text="The file's type: .csv, .parquet, .zip, .xml.")
    size_bytes = models.BigIntegerField()
    received_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    job_id = models.PositiveIntegerField(null=True, blank=True, help_text="The import job that reads it.")

    def __str__(self) -> str:
        return f"Upload {self.pk} ({self.received_bytes} of {self.size_bytes} bytes)"

    @property
    def complete(self) -> bool:
        return self.received_bytes == self.size_bytes

    @property
    def path(self) -> Path:
        """Where its bytes are: named by its id, never by the uploaded file's name."""
        return Path(settings.VAR_DIR) / "uploads" / f"{self.pk}{self.suffix}"


def upload_file_delete_on_commit(sender, instance: CohortUpload, **kwargs) -> None:
    """post_delete of an upload however it goes (its owner's account deleted with it, the admin): its bytes too."""
    path = instance.path
    transaction.on_commit(lambda: path.unlink(missing_ok=True), robust=True)


CHART_VERSION_FOLDER = re.compile(r"v(\d+)")  # the name of a chart version's folder under CHART_ROOT


def chart_version_folder(version: int) -> Path:
    """Where the chart files of one chart version are (healthagent.cohort.charts.minute_figure_file)."""
    return Path(settings.CHART_ROOT) / f"v{version}"


def participant_chart_folder(participant_pk: int, version: int) -> Path:
    """Where the participant's chart files of one chart version are."""
    return chart_version_folder(version) / f"p{participant_pk}"


def participant_chart_folders(participant_pk: int) -> list[Path]:
    """The participant's chart folders of every chart version built."""
    return sorted(Path(settings.CHART_ROOT).glob(f"v*/p{participant_pk}"))


def participant_files_delete_on_commit(sender, instance: Participant, **kwargs) -> None:
    """post_delete of a participant however it goes (its cohort deleted in the admin, dropped by an import's
    k-anonymity): once the deletion commits, its minute-level file and its charts' files too, so that no copy of its
    data stays on disk. Not before: a rolled-back deletion keeps them."""
    trajectory = Path(settings.TRAJECTORY_ROOT) / instance.trajectory_path if instance.trajectory_path else None
    pk = instance.pk

    def remove() -> None:
        if trajectory is not None:
            trajectory.unlink(missing_ok=True)
        for folder in participant_chart_folders(pk):
            shutil.rmtree(folder, ignore_errors=True)

    transaction.on_commit(remove, robust=True)


def cohort_folder_delete_on_commit(sender, instance: Cohort, **kwargs) -> None:
    """post_delete of a cohort: its trajectory folder (``cohort-<id>``, healthagent.cohort.importing), once its
    participants' files are gone (they go first, on the same commit), if nothing else is in it."""
    folder = Path(settings.TRAJECTORY_ROOT) / f"cohort-{instance.pk}"

    def remove() -> None:
        with contextlib.suppress(OSError):  # not there, or not empty: left as it is
            folder.rmdir()

    transaction.on_commit(remove, robust=True)


class ApiTokenScope(models.Model):
    """What an API token may do (healthagent.tokens): ``read`` (the default: a token without a row reads), or
    ``write`` as well (create studies, open and close them, enrol clinicians, queue jobs)."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    token = models.OneToOneField("knox.AuthToken", on_delete=models.CASCADE, primary_key=True, related_name="scope")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)

    def __str__(self) -> str:
        return f"{self.scope} scope of token {self.token_id}"
