"""The pre-registration pages (issue 21): a study's protocol with its power analysis and lock, and the manifest."""

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render

from evaluation.forms import ProtocolForm
from evaluation.models import Protocol
from evaluation.protocol import (
    PROTOCOL_FIELDS,
    PowerInputs,
    ProtocolError,
    canonical_json,
    power_analysis,
    power_figure,
    protocol_lock,
    protocol_save,
)
from evaluation.selectors import access_study, study_changeable_by
from evaluation.views import RESEARCH_ROLES
from healthagent.roles import role_required


def _protocol_values(data: dict) -> dict:
    return {name: data[name] for name in PROTOCOL_FIELDS if name in data}


@role_required(*RESEARCH_ROLES)
def study_protocol(request, study_id: int):
    """The study's pre-registration: the protocol form, its power analysis (computed on request) and the lock."""
    study = access_study(user=request.user, study_id=study_id)
    protocol = Protocol.objects.filter(study=study).select_related("primary_variant_a", "primary_variant_b").first()
    initial = {}
    if protocol is not None:
        initial = {name: getattr(protocol, name) for name in PROTOCOL_FIELDS if name != "power"}
        initial.update(
            {
                f"power_{key}": value
                for key, value in (protocol.power.get("inputs") or {}).items()
                if key in ("sd", "difference", "icc")
            }
        )
        initial["power_target"] = protocol.power.get("target_power", 0.8)
        initial["power_alpha_width"] = protocol.power.get("target_alpha_width")
    form = ProtocolForm(request.POST or None, study=study, initial=initial)
    can_change = study_changeable_by(study=study, user=request.user)
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied("only the study's owner or an admin may change its protocol")
        action = request.POST.get("action", "save")
        try:
            if action == "lock":
                locked = protocol_lock(study=study, user=request.user)
                messages.success(request, f"The protocol is locked. Its manifest's SHA-256: {locked.manifest_sha256}.")
                return redirect("evaluation:study_protocol", study_id=study.pk)
            if form.is_valid():
                data = form.cleaned_data
                values = _protocol_values(data)
                values["power"] = protocol.power if protocol is not None else {}
                if action == "power":
                    values["power"] = power_analysis(
                        PowerInputs(
                            sd=data["power_sd"],
                            difference=data["power_difference"],
                            icc=data["power_icc"],
                            alpha=data["alpha"],
                            sided=data["sided"],
                            test=data["primary_test"],
                            points=tuple(
                                next(
                                    d for d in study.rubric.dimensions.all() if d.key == data["primary_dimension"]
                                ).points
                            ),
                        ),
                        target_power=data["power_target"],
                        raters=data["planned_raters_per_item"],
                        target_alpha_width=data["power_alpha_width"],
                        seed=study.seed,
                        planned_items=data["planned_items"],
                    )
                    choice = values["power"]["choice"]
                    if choice is not None:
                        values["planned_items"] = choice["items"]
                protocol_save(study=study, values=values, user=request.user, reason=data.get("reason", ""))
                if action == "power" and not values["power"]["choice"]:
                    messages.warning(request, "No design on the curve reaches the targets: see the curve.")
                else:
                    messages.success(
                        request,
                        "Power analysis done: the planned items are the smallest design that reaches the targets."
                        if action == "power"
                        else "Protocol saved.",
                    )
                return redirect("evaluation:study_protocol", study_id=study.pk)
        except ProtocolError as error:
            form.add_error(None, str(error).capitalize() + ".")
    figure = power_figure(protocol.power) if protocol is not None else None
    return render(
        request,
        "evaluation/protocol.html",
        {
            "study": study,
            "protocol": protocol,
            "form": form,
            "can_change": can_change,
            "figures": {"power_figure": json.loads(figure)} if figure else {},
            "deviations": list(protocol.deviations.select_related("created_by")) if protocol else [],
        },
    )


@role_required(*RESEARCH_ROLES)
def study_protocol_manifest(request, study_id: int):
    """The locked manifest, byte for byte what was hashed (its SHA-256 is in the audit log)."""
    study = access_study(user=request.user, study_id=study_id)
    protocol = Protocol.objects.filter(study=study, locked_at__isnull=False).first()
    if protocol is None:
        raise Http404("the study has no locked protocol")
    response = HttpResponse(canonical_json(protocol.manifest), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-protocol.json"'
    return response
