"""The read-only JSON API for scripts: one paginated list per resource, token authentication.

Make a token on your account page (``/account/``: each expires, and is revoked there) and send
``Authorization: Token <token>``. Researchers and admins only.
"""

from knox.auth import TokenAuthentication
from rest_framework import generics, serializers
from rest_framework.authentication import SessionAuthentication
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
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


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
