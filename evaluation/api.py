"""The read-only JSON API for scripts: one paginated list per resource, token authentication.

Make a token on your account page (``/account/``: each expires, and is revoked there) and send
``Authorization: Token <token>``. Researchers and admins only.
"""

from knox.auth import TokenAuthentication
from rest_framework import generics, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission

from evaluation.models import Assignment, Rating, Study, StudyItem
from evaluation.selectors import access_study, studies_visible_to
from healthagent.roles import Role, user_has_role


class ResearchersOnly(BasePermission):
    message = "The API is for researchers and admins."

    def has_permission(self, request, view):
        return user_has_role(request.user, Role.RESEARCHER, Role.ADMIN)


class Pages(PageNumberPagination):
    """``?page=`` (past the last: 404) and ``?page_size=`` (1 to 1000; anything else is a 400 that says so, rather
    than DRF's silent fall-back to the default, which would hand a script a page it did not ask for)."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: f"a whole number from 1 to {self.max_page_size}"})
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters


class StudySerializer(serializers.ModelSerializer):
    rubric = serializers.CharField(source="rubric.name")

    class Meta:
        model = Study
        fields = [
            "id",
            "name",
            "mode",
            "status",
            "rubric",
            "raters_per_item",
            "window_days",
            "created_at",
            "opened_at",
            "closed_at",
        ]


class ItemSerializer(serializers.ModelSerializer):
    participant = serializers.CharField(source="participant.pseudonym")
    variant_a = serializers.CharField(source="variant_a.name")
    variant_b = serializers.CharField(source="variant_b.name", allow_null=True, default=None)

    class Meta:
        model = StudyItem
        fields = ["id", "position", "participant", "variant_a", "variant_b", "frozen", "dropped_at", "drop_note"]


class RatingSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="assignment.item_id")
    rater = serializers.CharField(source="assignment.rater.username")
    swapped = serializers.BooleanField(source="assignment.swapped")
    time_spent_s = serializers.FloatField(source="assignment.time_spent_s")

    class Meta:
        model = Rating
        fields = [
            "id",
            "item",
            "rater",
            "swapped",
            "scores",
            "preference",
            "comment",
            "unsafe",
            "unsafe_reason",
            "harm",
            "evidence",
            "revision",
            "time_spent_s",
            "created_at",
            "updated_at",
        ]


class SkipSerializer(serializers.ModelSerializer):
    rater = serializers.CharField(source="rater.username")
    skipped_at = serializers.DateTimeField(source="completed_at")

    class Meta:
        model = Assignment
        fields = ["id", "item", "rater", "skip_reason", "skipped_at", "time_spent_s"]


class ApiList(generics.ListAPIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ResearchersOnly]
    pagination_class = Pages


class StudyList(ApiList):
    serializer_class = StudySerializer

    def get_queryset(self):
        return studies_visible_to(user=self.request.user).select_related("rubric").order_by("pk")


class ItemList(ApiList):
    serializer_class = ItemSerializer

    def get_queryset(self):
        study = access_study(user=self.request.user, study_id=self.kwargs["study_id"])
        return (
            StudyItem.objects.filter(study=study)
            .select_related("participant", "variant_a", "variant_b")
            .order_by("position")
        )


class RatingList(ApiList):
    serializer_class = RatingSerializer

    def get_queryset(self):
        study = access_study(user=self.request.user, study_id=self.kwargs["study_id"])
        return Rating.objects.filter(assignment__study=study).select_related("assignment__rater").order_by("pk")


class SkipList(ApiList):
    """The items clinicians skipped, with their reasons (a skip has no rating)."""

    serializer_class = SkipSerializer

    def get_queryset(self):
        study = access_study(user=self.request.user, study_id=self.kwargs["study_id"])
        return (
            Assignment.objects.filter(study=study, state=Assignment.State.SKIPPED)
            .select_related("rater")
            .order_by("pk")
        )


def schema_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation's refusals in the schema, so that a client (and the
    schemathesis run of the suite) knows them: 401 without a valid token, 403 for a role without the API, 404 for a
    study that is not there or not the caller's to read, or a page past the last."""
    error = {"type": "object", "additionalProperties": True}  # {"detail": ...}, or {parameter: [message]}
    refusals = {
        "401": "No valid token (missing, expired or revoked).",
        "403": "The API is for researchers and admins.",
        "404": "No such study for you, or no such page.",
        "400": "A query parameter out of its range (page_size), said in the body.",
    }
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for status, description in refusals.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": error}}}
                )
    return result
