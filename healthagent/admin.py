from django.contrib import admin

from healthagent.models import AgentVariant, Cohort, Participant, Recommendation


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "k_anonymity", "created_at"]
    readonly_fields = ["import_report", "created_at"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["pseudonym", "cohort", "age_band", "sex", "minute_days"]
    list_filter = ["cohort", "sex"]
    search_fields = ["pseudonym"]
    readonly_fields = [field.name for field in Participant._meta.fields]


@admin.register(AgentVariant)
class AgentVariantAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "created_at"]


@admin.register(Recommendation)
class RecommendationAdmin(admin.ModelAdmin):
    list_display = ["participant", "variant", "status", "created_at"]
    list_filter = ["variant", "status"]
    readonly_fields = [field.name for field in Recommendation._meta.fields]
