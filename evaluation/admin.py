from django.contrib import admin
from django.core.exceptions import ValidationError

from evaluation.models import Dimension, Protocol, Rubric, Study
from evaluation.protocol import LOCKED_STUDY_FIELDS
from healthagent.admin import AuditedAdminMixin
from healthagent.models import AuditEntry


class DimensionInline(admin.TabularInline):
    model = Dimension
    extra = 0


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    inlines = [DimensionInline]
    list_display = ["name"]


@admin.register(Study)
class StudyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "mode", "status", "restricted", "raters_per_item", "created_at"]
    list_filter = ["mode", "status", "restricted"]
    filter_horizontal = ["clinicians", "researchers"]
    # Opening and closing go through the study page (evaluation.services.study_set_status), which audits them.
    readonly_fields = ["status", "opened_at", "closed_at", "consent_version"]
    audit_actions = {
        "added": AuditEntry.Action.STUDY_CREATED,
        "changed": AuditEntry.Action.STUDY_CHANGED,
        "deleted": AuditEntry.Action.STUDY_DELETED,
    }

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        locked = obj is not None and Protocol.objects.filter(study=obj, locked_at__isnull=False).exists()

        class ProtocolAwareForm(form):
            def clean(self):
                cleaned = super().clean()
                touched = sorted(set(self.changed_data) & set(LOCKED_STUDY_FIELDS)) if locked else []
                if touched:
                    raise ValidationError(
                        f"The study's protocol is locked: {', '.join(touched)} cannot change. Record a deviation "
                        "on the study's protocol page instead."
                    )
                return cleaned

        return ProtocolAwareForm

    def save_model(self, request, obj, form, change):
        # A changed consent text is a new version: every rater is asked to consent again before their next item.
        if change and "consent_text" in form.changed_data:
            obj.consent_version += 1
        super().save_model(request, obj, form, change)
