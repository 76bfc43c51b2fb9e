"""Researchers' pages for per-item criteria (evaluation.criteria): write them on the item's page, import JSONL."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from evaluation.criteria import CATEGORIES, criteria_changeable, criteria_import, criterion_add, criterion_delete
from evaluation.errors import EvaluationError
from evaluation.selectors import access_study, access_study_for_change
from healthagent.roles import Role, role_required

RESEARCH_ROLES = (Role.RESEARCHER, Role.ADMIN)


def _item_url(study_id: int, item_id: int) -> str:
    return reverse("evaluation:study_item_reference", args=[study_id, item_id]) + "#criteria"


@require_POST
@role_required(*RESEARCH_ROLES)
def study_item_criterion_add(request, study_id: int, item_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    entry = {key: request.POST.get(key, "") for key in ("criterion", "points", "category")}
    try:
        criterion_add(study=study, item_id=item_id, entry=entry, user=request.user)
    except EvaluationError as error:
        messages.error(request, f"Criterion not added: {error}.")
        request.session["criterion_entry"] = entry  # the item page puts back what was typed
    else:
        messages.success(request, "Criterion added.")
    return redirect(_item_url(study.pk, item_id))


@require_POST
@role_required(*RESEARCH_ROLES)
def study_item_criterion_delete(request, study_id: int, item_id: int, criterion_id: int):
    study = access_study_for_change(user=request.user, study_id=study_id)
    try:
        criterion_delete(study=study, item_id=item_id, criterion_id=criterion_id, user=request.user)
    except EvaluationError as error:
        messages.error(request, f"Not deleted: {error}.")
    else:
        messages.success(request, "Criterion deleted.")
    return redirect(_item_url(study.pk, item_id))


@role_required(*RESEARCH_ROLES)
def study_criteria_import(request, study_id: int):
    """Paste JSONL, one criterion per line; all or nothing, a bad line named by its number. (Pasted, not uploaded:
    the site takes no files; the paste is bounded by the request limit, DATA_UPLOAD_MAX_MEMORY_SIZE.)"""
    study = access_study(user=request.user, study_id=study_id)
    text = ""
    if request.method == "POST":
        study = access_study_for_change(user=request.user, study_id=study_id)
        text = request.POST.get("jsonl", "")
        try:
            count = criteria_import(study=study, text=text, user=request.user)
        except EvaluationError as error:
            messages.error(request, f"Nothing imported: {error}.")
        else:
            messages.success(request, f"Imported {count} criteri{'on' if count == 1 else 'a'}.")
            return redirect(reverse("evaluation:study_detail", args=[study.pk]) + "#criteria")
    items = study.items.order_by("position").values_list("pk", "position", "variant_a__name")
    return render(
        request,
        "evaluation/criteria_import.html",
        {
            "study": study,
            "text": text,
            "categories": CATEGORIES,
            "items": list(items)[:20],
            "can_import": criteria_changeable(study=study, user=request.user),
        },
    )
