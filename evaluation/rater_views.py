"""Pages of rater onboarding and quality control (issue 20): the clinician's consent and training feedback, the
researcher's item references and reinstatements. Views only translate; evaluation.raters does the work."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evaluation.criteria import criteria_changeable
from evaluation.forms import ItemReferenceForm
from evaluation.models import Assignment, Criterion, Dimension, Study, StudyItem
from evaluation.raters import RaterError, rater_onboard, rater_reinstate, standing_of, study_item_reference_set
from evaluation.selectors import access_study, access_study_for_change, study_changeable_by, training_comparison
from evaluation.views import RESEARCH_ROLES, enrolled_study, own_assignment
from healthagent.roles import Role, role_required


@role_required(Role.CLINICIAN)
def onboarding(request, study_id: int):
    """The study's consent text (accept or decline) and the background form, before the first item."""
    study = enrolled_study(request, study_id)
    standing = standing_of(study=study, rater=request.user)
    posted = request.POST if request.method == "POST" else None
    if posted is not None:
        accept = posted.get("decision") == "accept"
        background = {field["key"]: posted.get(f"background-{field['key']}", "") for field in study.background_fields}
        try:
            version = int(posted.get("consent_version", "0")) if posted.get("consent_version", "").isdigit() else 0
            rater_onboard(
                study=study, rater=request.user, accept=accept, consent_version=version, background=background
            )
        except RaterError as error:
            messages.error(request, f"Not saved: {error}.")
        else:
            if accept:
                messages.success(request, "Thank you: your consent and background are recorded.")
                return redirect("evaluation:study_next", study_id=study.pk)
            messages.info(request, "You declined: you will not be given items in this study.")
            return redirect("evaluation:queue")
    shown = dict(posted.items()) if posted is not None else {}
    fields = [
        {
            **field,
            "name": f"background-{field['key']}",
            "value": shown.get(
                f"background-{field['key']}", (standing.background if standing else {}).get(field["key"], "")
            ),
        }
        for field in study.background_fields
    ]
    return render(request, "evaluation/onboarding.html", {"study": study, "fields": fields, "standing": standing})


@role_required(Role.CLINICIAN)
def training_feedback(request, assignment_id: int):
    """After a training item: the clinician's own scores beside the reference and the researcher's rationale."""
    assignment = own_assignment(request, assignment_id)
    if assignment.purpose != Assignment.Purpose.TRAINING or assignment.state != Assignment.State.DONE:
        raise Http404("no feedback for this item")
    return render(
        request,
        "evaluation/training_feedback.html",
        {"assignment": assignment, "study": assignment.study, "rows": training_comparison(assignment)},
    )


@role_required(*RESEARCH_ROLES)
def study_item_reference(request, study_id: int, item_id: int):
    """Make an item a training, qualification or gold item with its reference scores (draft studies only)."""
    study = access_study(user=request.user, study_id=study_id)
    item = get_object_or_404(
        StudyItem.objects.select_related("participant", "variant_a", "variant_b"), pk=item_id, study=study
    )
    dimensions = [d for d in study.rubric.dimensions.all() if d.is_scored]
    form = ItemReferenceForm(request.POST or None, initial={"kind": item.kind, "rationale": item.rationale})
    can_change = study_changeable_by(study=study, user=request.user)
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied("only the study's owner or an admin may change it")
        if form.is_valid():
            reference = {d.key: request.POST.get(f"reference-{d.key}", "") for d in dimensions}
            if study.mode == Study.Mode.PAIRWISE:
                reference["preference"] = request.POST.get("reference-preference", "")
            tolerance = {d.key: request.POST.get(f"tolerance-{d.key}", "") for d in dimensions}
            try:
                study_item_reference_set(
                    study=study,
                    item_id=item.pk,
                    kind=form.cleaned_data["kind"],
                    reference=reference,
                    tolerance=tolerance,
                    rationale=form.cleaned_data["rationale"],
                    user=request.user,
                )
            except RaterError as error:
                form.add_error(None, str(error).capitalize() + ".")
            else:
                messages.success(request, f"Item {item.position + 1} is now a {form.cleaned_data['kind']} item.")
                return redirect("evaluation:study_detail", study_id=study.pk)
    posted = request.POST if request.method == "POST" else {}
    rows = [
        {
            "dimension": d,
            "reference": posted.get(f"reference-{d.key}", item.reference.get(d.key, "")),
            "tolerance": posted.get(
                f"tolerance-{d.key}", item.tolerance.get(d.key, 0 if d.scale == Dimension.Scale.BINARY else 1)
            ),
        }
        for d in dimensions
    ]
    return render(
        request,
        "evaluation/item_reference.html",
        {
            "study": study,
            "item": item,
            "form": form,
            "rows": rows,
            "preference": posted.get("reference-preference", item.reference.get("preference", "")),
            "pairwise": study.mode == Study.Mode.PAIRWISE,
            "can_change": can_change and study.status == Study.Status.DRAFT,
            "criteria": list(item.criteria.all()),
            "criteria_changeable": criteria_changeable(study=study, user=request.user),
            "criterion_entry": request.session.pop("criterion_entry", {}),
            "criterion_categories": Criterion.Category.choices,
        },
    )


@require_POST
@role_required(*RESEARCH_ROLES)
def study_rater_reinstate(request, study_id: int, user_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    rater = get_object_or_404(study.clinicians, pk=user_id)
    try:
        rater_reinstate(study=study, rater=rater, user=request.user, note=request.POST.get("note", ""))
    except RaterError as error:
        messages.error(request, f"Not reinstated: {error}.")
    else:
        messages.success(request, f"{rater.get_username()} may rate again; their gold accuracy counts afresh.")
    return redirect("evaluation:study_detail", study_id=study.pk)
