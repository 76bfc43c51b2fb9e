"""The JSON API for scripts and pipelines: paginated lists, filters, and the writes a pipeline needs (create a
study, add items, gold and training references and criteria, open or close it, enrol clinicians, read its
statistics, queue a job and follow it). Token authentication.

Make a token on your account page (``/account/``: each expires, and is revoked there) and send
``Authorization: Token <token>``. Researchers and admins only; a write needs a token with the write scope.
Every request counts against ``API_RATE`` per user (429 beyond it). The reference is at ``/api/docs/``.
"""

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.auth import TokenAuthentication
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from evaluation.criteria import criteria_add
from evaluation.forms import StudyForm
from evaluation.models import Assignment, Criterion, Rating, Study, StudyItem
from evaluation.raters import RaterError, study_item_reference_set
from evaluation.selectors import access_study, access_study_for_change, studies_visible_to, study_overview
from evaluation.services import (
    EvaluationError,
    StudySpec,
    study_create,
    study_rater_enrol,
    study_set_status,
)
from evaluation.study_items import study_items_add
from healthagent.models import AgentVariant
from healthagent.roles import Role, user_has_role
from healthagent.tokens import api_token_may_write
from modeling.jobs import JobError, job_kind, job_payload, job_queue
from modeling.models import Job


class ResearchersOnly(BasePermission):
    message = "The API is for researchers and admins."

    def has_permission(self, request, view):
        return user_has_role(request.user, Role.RESEARCHER, Role.ADMIN)


class WriteScope(BasePermission):
    """Reads for any researcher's token; anything else needs a token with the write scope."""

    message = "This token may only read: make one with the write scope on your account page."

    def has_permission(self, request, view):
        return request.method in SAFE_METHODS or api_token_may_write(request.auth)


class ApiRate(UserRateThrottle):
    scope = "api"


class Pages(PageNumberPagination):
    """``?page=`` (past the last: 404; empty: 400) and ``?page_size=`` (1 to 1000; anything else is a 400 that says so, rather
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

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not raw.strip():  # DRF would read an empty one as the first page
            raise ValidationError({self.page_query_param: "a whole number from 1"})
        return super().get_page_number(request, paginator)

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
        fields = [
            "id",
            "position",
            "participant",
            "variant_a",
            "variant_b",
            "kind",
            "frozen",
            "dropped_at",
            "drop_note",
        ]


class ItemsAddSerializer(serializers.Serializer):
    """Items to add to a draft study: participants of its cohort by pseudonym, and variant ids (two, for a pairwise
    study)."""

    participants = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=10_000)
    variants = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1, max_length=50
    )


class ItemReferenceSerializer(serializers.Serializer):
    """An item's kind, and for training, qualification and gold items the reference scores (dimension key -> score;
    pairwise: a, b or tie, and ``preference``), the tolerance in points per dimension and the rationale shown in
    training."""

    kind = serializers.ChoiceField(choices=StudyItem.Kind.choices)
    reference = serializers.DictField(required=False, default=dict)
    tolerance = serializers.DictField(required=False, default=dict)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class CriterionSerializer(serializers.ModelSerializer):
    criterion = serializers.CharField(source="text")

    class Meta:
        model = Criterion
        fields = ["id", "item", "position", "criterion", "points", "category"]


class CriterionEntrySerializer(serializers.Serializer):
    item = serializers.IntegerField()
    criterion = serializers.CharField(max_length=400)
    points = serializers.IntegerField(min_value=-10, max_value=10)
    category = serializers.ChoiceField(choices=Criterion.Category.choices)


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
    parser_classes = [JSONParser]  # bodies are JSON (the schema says so)
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ResearchersOnly, WriteScope]
    throttle_classes = [ApiRate]
    pagination_class = Pages


class ApiView(APIView):
    parser_classes = [JSONParser]
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ResearchersOnly, WriteScope]
    throttle_classes = [ApiRate]


class StudyCreateSerializer(serializers.Serializer):
    """What the study form takes (evaluation.forms.StudyForm, which validates it): ids of the rubric, cohort,
    variants and clinicians; the rest as on the form, with its defaults."""

    name = serializers.CharField(max_length=120)
    mode = serializers.ChoiceField(choices=Study.Mode.choices, required=False)
    rubric = serializers.IntegerField()
    cohort = serializers.IntegerField()
    variants = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    clinicians = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    raters_per_item = serializers.IntegerField(min_value=1, max_value=50, required=False)
    participants = serializers.IntegerField(min_value=1, required=False)
    window_days = serializers.IntegerField(min_value=1, max_value=90, required=False)
    seed = serializers.IntegerField(required=False)
    instructions = serializers.CharField(required=False, allow_blank=True)
    restricted = serializers.BooleanField(required=False)


def _form_errors(form) -> dict[str, list[str]]:
    return {field: [str(error) for error in errors] for field, errors in form.errors.items()}


class StudyList(ApiList):
    serializer_class = StudySerializer

    def get_queryset(self):
        return studies_visible_to(user=self.request.user).select_related("rubric").order_by("pk")

    @extend_schema(request=StudyCreateSerializer, responses={201: StudySerializer})
    def post(self, request):
        """Create a draft study, as the study form does (its items drawn from the cohort's answers)."""
        defaults = {name: field.initial for name, field in StudyForm.base_fields.items() if field.initial is not None}
        given = request.data if isinstance(request.data, dict) else {}
        form = StudyForm(data={**defaults, **given})
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        data = form.cleaned_data
        spec = StudySpec(
            name=data["name"],
            mode=data["mode"],
            rubric=data["rubric"],
            cohort=data["cohort"],
            variants=list(data["variants"]),
            raters_per_item=data["raters_per_item"],
            clinicians=list(data["clinicians"]),
            instructions=data["instructions"],
            participants=data["participants"],
            window_days=data["window_days"],
            seed=data["seed"],
            restricted=data["restricted"],
            researchers=list(data["researchers"]),
            show_captions=data["show_captions"],
            rater_settings=form.rater_settings(),
        )
        try:
            study = study_create(spec=spec, user=request.user)
        except EvaluationError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)


def _study_for_change(request, study_id: int) -> Study:
    try:
        return access_study_for_change(user=request.user, study_id=study_id)
    except Http404 as error:
        raise NotFound(str(error)) from error
    except DjangoPermissionDenied as error:
        raise PermissionDenied(str(error)) from error


class StudyStatus(ApiView):
    @extend_schema(
        request=inline_serializer(
            "StudyStatusChange",
            {
                "status": serializers.ChoiceField(choices=["open", "closed"]),
                "note": serializers.CharField(required=False, help_text="Why, when reopening a closed study."),
            },
        ),
        responses={200: StudySerializer},
    )
    def post(self, request, study_id: int):
        """Open a draft or closed study, or close an open one (its owner or an admin)."""
        study = _study_for_change(request, study_id)
        wanted = request.data.get("status") if isinstance(request.data, dict) else None
        if wanted not in ("open", "closed"):
            raise ValidationError({"status": ["open or closed"]})
        try:
            study = study_set_status(
                study=study, status=wanted, user=request.user, via="API", note=str(request.data.get("note") or "")
            )
        except EvaluationError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(StudySerializer(study).data)


class StudyClinicians(ApiView):
    @extend_schema(
        request=inline_serializer(
            "StudyEnrolment", {"usernames": serializers.ListField(child=serializers.CharField(), min_length=1)}
        ),
        responses={200: inline_serializer("StudyClinicianList", {"clinicians": serializers.ListField()})},
    )
    def post(self, request, study_id: int):
        """Enrol clinicians (by user name) as raters of the study; all or none."""
        study = _study_for_change(request, study_id)
        names = request.data.get("usernames") if isinstance(request.data, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ValidationError({"usernames": ["a list of user names"]})
        users = {user.username: user for user in User.objects.filter(username__in=names, is_active=True)}
        if unknown := sorted(set(names) - set(users)):
            raise ValidationError({"usernames": [f"no such user: {', '.join(unknown)}"]})
        try:
            with transaction.atomic():
                for name in names:
                    study_rater_enrol(study=study, user=users[name], actor=request.user, via="API")
        except EvaluationError as error:
            raise ValidationError({"usernames": [str(error)]}) from error
        return Response({"clinicians": sorted(study.clinicians.values_list("username", flat=True))})


class StudyStatistics(ApiView):
    @extend_schema(responses={200: inline_serializer("StudyStatisticsBody", {"items": serializers.IntegerField()})})
    def get(self, request, study_id: int):
        """Progress: items, ratings needed and done, per rater (the study page's overview)."""
        study = access_study(user=request.user, study_id=study_id)
        overview = study_overview(study=study)
        return Response(
            {
                "status": study.status,
                "items": overview["items"],
                "ratings_needed": overview["ratings_needed"],
                "ratings_done": overview["ratings_done"],
                "extra_raters": overview["extra_raters"],
                "per_rater": overview["per_rater"],
                "items_waiting_for_answers": len(overview["waiting"]),
                "items_dropped": len(overview["dropped"]),
            }
        )


JOB_FIELDS = ("id", "kind", "state", "progress", "message", "error", "attempts")


def _job_body(job: Job) -> dict[str, Any]:
    payload = job_payload(job)
    return {**{field: payload[field] for field in JOB_FIELDS}, "result": job.result or {}}


class JobList(ApiView):
    @extend_schema(
        request=inline_serializer("JobRequest", {"kind": serializers.CharField(), "config": serializers.DictField()}),
        responses={201: inline_serializer("JobBody", {"id": serializers.IntegerField()})},
    )
    def post(self, request):
        """Queue a job (admins): its kind and config, as the job form takes them."""
        if not user_has_role(request.user, Role.ADMIN):
            raise PermissionDenied("jobs are queued by admins")
        body = request.data if isinstance(request.data, dict) else {}
        try:
            job_kind(str(body.get("kind", "")))
            job = job_queue(
                kind_name=str(body["kind"]), config=dict(body.get("config") or {}), user=request.user, via="API"
            )
        except (JobError, KeyError, TypeError, ValueError) as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(_job_body(job), status=status.HTTP_201_CREATED)


class JobDetail(ApiView):
    @extend_schema(responses={200: inline_serializer("JobState", {"id": serializers.IntegerField()})})
    def get(self, request, job_id: int):
        """A job's state, progress and result: jobs an admin can see, or the ones this user queued."""
        job = Job.objects.filter(pk=job_id).first()
        if job is None or not (user_has_role(request.user, Role.ADMIN) or job.queued_by_id == request.user.pk):
            raise NotFound("no such job for you")
        return Response(_job_body(job))


class ItemList(ApiList):
    serializer_class = ItemSerializer

    def get_queryset(self):
        study = access_study(user=self.request.user, study_id=self.kwargs["study_id"])
        return (
            StudyItem.objects.filter(study=study)
            .select_related("participant", "variant_a", "variant_b")
            .order_by("position")
        )

    @extend_schema(request=ItemsAddSerializer, responses={201: ItemSerializer(many=True)})
    def post(self, request, study_id: int):
        """Add items to a draft study (its owner or an admin): each participant with each variant, or with the pair
        of a pairwise study; all or none. The answers are drawn from the cohort's, as for the study's first items."""
        study = _study_for_change(request, study_id)
        body = ItemsAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = list(dict.fromkeys(body.validated_data["variants"]))
        variants = {variant.pk: variant for variant in AgentVariant.objects.filter(pk__in=ids)}
        if unknown := [str(pk) for pk in ids if pk not in variants]:
            raise ValidationError({"variants": [f"no such variant: {', '.join(unknown)}"]})
        try:
            items = study_items_add(
                study=study,
                pseudonyms=body.validated_data["participants"],
                variants=[variants[pk] for pk in ids],
                user=request.user,
            )
        except EvaluationError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(ItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class ItemReference(ApiView):
    @extend_schema(request=ItemReferenceSerializer, responses={200: ItemSerializer})
    def post(self, request, study_id: int, item_id: int):
        """Make an item a training, qualification or gold item with its reference scores, or a results item again
        (a draft study; its owner or an admin)."""
        study = _study_for_change(request, study_id)
        body = ItemReferenceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            item = study_item_reference_set(study=study, item_id=item_id, user=request.user, **body.validated_data)
        except RaterError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(ItemSerializer(item).data)


class CriterionList(ApiList):
    """The study's per-item criteria (HealthBench style), and adding them while the study is a draft."""

    serializer_class = CriterionSerializer

    def get_queryset(self):
        study = access_study(user=self.request.user, study_id=self.kwargs["study_id"])
        return Criterion.objects.filter(item__study=study).order_by("item__position", "position")

    @extend_schema(
        request=inline_serializer("CriteriaAdd", {"criteria": CriterionEntrySerializer(many=True)}),
        responses={201: inline_serializer("CriteriaAdded", {"added": serializers.IntegerField()})},
    )
    def post(self, request, study_id: int):
        """Add criteria to the study's items, after those they have; all or none (the first bad entry is named)."""
        study = _study_for_change(request, study_id)
        entries = request.data.get("criteria") if isinstance(request.data, dict) else None
        if not isinstance(entries, list):
            raise ValidationError({"criteria": ["a list of {item, criterion, points, category}"]})
        try:
            added = criteria_add(study=study, entries=entries, user=request.user)
        except EvaluationError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response({"added": added}, status=status.HTTP_201_CREATED)


class RatingFilter(filters.FilterSet):
    item = filters.NumberFilter(field_name="assignment__item_id", help_text="Only this item's ratings.")
    rater = filters.CharFilter(field_name="assignment__rater__username", help_text="Only this rater's ratings.")
    updated_after = filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gt", help_text="Only ratings saved after this moment (ISO 8601)."
    )

    class Meta:
        model = Rating
        fields = ["unsafe"]


class RatingList(ApiList):
    serializer_class = RatingSerializer
    filter_backends = [filters.DjangoFilterBackend]
    filterset_class = RatingFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the filters without a request's study
            return Rating.objects.none()
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
        "403": "The API is for researchers and admins; a write needs a token with the write scope.",
        "404": "No such study (or job) for you, or no such page.",
        "400": "A parameter or body out of its range, said in the body.",
        "429": "Over the API's rate for this user (API_RATE): wait and try again.",
    }
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for code, description in refusals.items():
                operation["responses"].setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": error}}}
                )
    return result


def api_reference(request):
    """The API's reference, read from its OpenAPI schema: every operation with its parameters and body, served from
    this site (no JavaScript from elsewhere). Public, like the schema."""
    from django.shortcuts import render
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    schemas = document.get("components", {}).get("schemas", {})
    operations = []
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            fields = schemas.get(body.get("$ref", "").rsplit("/", 1)[-1], {}).get("properties", {}) if body else {}
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "description": operation.get("description", ""),
                    "parameters": operation.get("parameters", []),
                    "body": fields,
                    "responses": sorted(operation.get("responses", {})),
                }
            )
    return render(request, "evaluation/api_reference.html", {"document": document, "operations": operations})
