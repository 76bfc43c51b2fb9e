from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from healthagent.audit import audit_record
from healthagent.models import AgentVariant, AuditEntry, Cohort, Participant, Recommendation


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["pseudonym", "cohort", "age_band", "sex", "minute_days"]
    list_filter = ["cohort", "sex"]
    search_fields = ["pseudonym"]
    readonly_fields = [field.name for field in Participant._meta.fields]


@admin.register(Recommendation)
class RecommendationAdmin(admin.ModelAdmin):
    list_display = ["participant", "variant", "status", "created_at"]
    list_filter = ["variant", "status"]
    readonly_fields = [field.name for field in Recommendation._meta.fields]


if TYPE_CHECKING:  # the mixin runs on a ModelAdmin: checked as one, a plain class at run time
    _ModelAdmin = admin.ModelAdmin
else:
    _ModelAdmin = object


class AuditedAdminMixin(_ModelAdmin):
    """Django admin changes of this model also go to the audit log, in the admin's own transaction.
    Each admin names its own actions (``audit_actions``: added, changed, deleted): no default, so no
    model's changes are ever recorded as another model's."""

    audit_actions: dict[str, AuditEntry.Action]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if set(getattr(cls, "audit_actions", {})) != {"added", "changed", "deleted"}:
            raise TypeError(f"{cls.__name__} must set audit_actions for 'added', 'changed' and 'deleted'")

    def audit_action(self, verb: str, obj, message) -> AuditEntry.Action:
        return self.audit_actions[verb]

    def log_addition(self, request, obj, message):
        audit_record(
            actor=request.user,
            action=self.audit_action("added", obj, message),
            target=obj,
            details={"via": "django admin"},
        )
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit_record(
            actor=request.user,
            action=self.audit_action("changed", obj, message),
            target=obj,
            details={"via": "django admin", "changed_fields": changed_fields(message), **self.audit_details(obj)},
        )
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(
                actor=request.user, action=self.audit_actions["deleted"], target=obj, details={"via": "django admin"}
            )
        return super().log_deletions(request, queryset)

    def audit_details(self, obj) -> dict:
        return {}

    def response_action(
        self, request: HttpRequest, queryset: QuerySet, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        # Bulk actions (delete selected) audit and act in one transaction, as the change form does.
        with transaction.atomic(using=router.db_for_write(self.model)):
            return super().response_action(request, queryset, *args, **kwargs)


def changed_fields(message) -> list[str]:
    """The field names in an admin change message (a list of {"changed": {"fields": [...]}} dicts)."""
    entries = message if isinstance(message, list) else []
    return sorted({name for entry in entries for name in entry.get("changed", {}).get("fields", [])})


class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    audit_actions = {
        "added": AuditEntry.Action.USER_CREATED,
        "changed": AuditEntry.Action.USER_CHANGED,
        "deleted": AuditEntry.Action.USER_DELETED,
    }

    def user_change_password(self, request, id, form_url=""):
        # UserAdmin saves the password and then logs the change outside any transaction; the audit entry
        # must commit with the new password (or neither does).
        with transaction.atomic(using=router.db_for_write(User)):
            return super().user_change_password(request, id, form_url)

    # Least privilege for the admin role (issue 23): only a superuser sees superuser status and single permissions
    # on the form, or changes, deletes or sets the password of a superuser; an admin gives roles (groups).
    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        hidden = {"is_superuser", "user_permissions"}
        return [
            (name, {**options, "fields": [field for field in options["fields"] if field not in hidden]})
            for name, options in fieldsets
        ]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            raise PermissionDenied("Only a superuser deletes a superuser.")
        super().delete_queryset(request, queryset)

    def audit_action(self, verb, obj, message):
        if verb == "changed" and {"Groups", "groups", "Staff status", "Superuser status"} & set(
            changed_fields(message)
        ):
            return AuditEntry.Action.USER_ROLES_CHANGED
        return super().audit_action(verb, obj, message)

    def audit_details(self, obj):
        return {
            "roles": sorted(obj.groups.values_list("name", flat=True)),
            "is_staff": obj.is_staff,
            "is_superuser": obj.is_superuser,
        }


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)


@admin.register(Cohort)
class CohortAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Cohorts are made by an import (audited as cohort.imported); a change or deletion here is audited too."""

    list_display = ["name", "source", "k_anonymity", "created_at"]
    readonly_fields = ["import_report", "created_at"]
    audit_actions = {
        "added": AuditEntry.Action.COHORT_IMPORTED,
        "changed": AuditEntry.Action.COHORT_CHANGED,
        "deleted": AuditEntry.Action.COHORT_DELETED,
    }


@admin.register(AgentVariant)
class AgentVariantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Every change of what a study compares is audited, with the backend and config it ended with (the model's
    clean() refuses a config that would send a secret: healthagent.models.llm_server_problem)."""

    list_display = ["name", "backend", "created_at"]
    audit_actions = {
        "added": AuditEntry.Action.VARIANT_CREATED,
        "changed": AuditEntry.Action.VARIANT_CHANGED,
        "deleted": AuditEntry.Action.VARIANT_DELETED,
    }

    def audit_details(self, obj):
        return {"backend": obj.backend, "config": obj.config}


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, even for admins."""

    list_display = ["created_at", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_name", "object_repr", "object_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
