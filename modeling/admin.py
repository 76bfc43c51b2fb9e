from django.contrib import admin

from modeling.models import Checkpoint, Job, Prediction


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "state", "progress", "queue", "device", "created_at"]
    list_filter = ["kind", "state", "queue"]
    readonly_fields = [field.name for field in Job._meta.fields]


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["family", "size", "path", "job", "created_at"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["participant", "task", "label", "estimate", "low", "high", "checkpoint", "created_at"]
    list_filter = ["task", "checkpoint"]
    readonly_fields = [field.name for field in Prediction._meta.fields]
