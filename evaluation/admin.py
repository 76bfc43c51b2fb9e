from django.contrib import admin

from evaluation.models import Dimension, Rubric, Study


class DimensionInline(admin.TabularInline):
    model = Dimension
    extra = 0


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    inlines = [DimensionInline]
    list_display = ["name"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "mode", "status", "raters_per_item", "created_at"]
    list_filter = ["mode", "status"]
    filter_horizontal = ["clinicians"]
