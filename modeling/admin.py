from django.contrib import admin

from healthagent.admin import AuditedAdminMixin
from healthagent.models import AuditEntry
from modeling.models import Checkpoint, Job, Prediction


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "state", "progress", "queue", "device", "created_at"]
    list_filter = ["kind", "state", "queue"]
    readonly_fields = [field.name for field in Job._meta.fields]


@admin.register(Checkpoint)
class CheckpointAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """A checkpoint's path decides which weights a job loads: every change is audited."""

    list_display = ["family", "size", "path", "job", "created_at"]
    audit_actions = {
        "added": AuditEntry.Action.CHECKPOINT_CREATED,
        "changed": AuditEntry.Action.CHECKPOINT_CHANGED,
        "deleted": AuditEntry.Action.CHECKPOINT_DELETED,
    }

    def audit_details(self, obj):
        return {"family": obj.family, "path": obj.path}


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["participant", "task", "label", "estimate", "low", "high", "checkpoint", "created_at"]
    list_filter = ["task", "checkpoint"]
    readonly_fields = [field.name for field in Prediction._meta.fields]
