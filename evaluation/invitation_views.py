"""The invitations page: researchers invite clinicians (into the studies they own), admins anyone; the list of
invitations sent and what became of them. The work is in healthagent.invitations; the link's page is
healthagent.views.invitation_accept_view."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.shortcuts import redirect, render

from evaluation.forms import InvitationsForm
from evaluation.models import Study
from evaluation.selectors import studies_visible_to, study_changeable_by
from healthagent.invitations import InvitationError, invitation_rows_parse, invitations_made_by, invitations_send
from healthagent.roles import Role, role_required, user_has_role

MAX_FILE_BYTES = 1024**2


def _studies(user: User) -> list[Study]:
    """The studies ``user`` may enrol people in: those they may change, not closed."""
    visible = studies_visible_to(user=user).exclude(status=Study.Status.CLOSED).order_by("name")
    return [study for study in visible if study_changeable_by(study=study, user=user)]


def _resolver(studies: list[Study]):
    by_key = {**{study.name.lower(): study.pk for study in studies}, **{str(study.pk): study.pk for study in studies}}

    def resolve(key: str) -> int:
        if key.strip().lower() not in by_key:
            raise InvitationError(f"no open study {key!r} that you may enrol people in")
        return by_key[key.strip().lower()]

    return resolve


def _text(form: InvitationsForm) -> str:
    upload = form.cleaned_data.get("file")
    if upload is None:
        return form.cleaned_data["people"]
    if upload.size > MAX_FILE_BYTES:
        raise InvitationError(f"the file is larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        return upload.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvitationError("the file is not UTF-8 text (save it as CSV UTF-8)") from error


@role_required(Role.RESEARCHER, Role.ADMIN)
def invitations(request):
    studies = _studies(request.user)
    roles = list(Role) if user_has_role(request.user, Role.ADMIN) else [Role.CLINICIAN]
    form = InvitationsForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
        studies=studies,
        roles=roles,
        initial={"role": Role.CLINICIAN},
    )
    if request.method == "POST" and form.is_valid():
        try:
            rows = invitation_rows_parse(
                text=_text(form),
                default_role=form.cleaned_data["role"],
                default_study=form.cleaned_data["study"],
                invited_by=request.user,
                resolve_study=_resolver(studies),
            )
            sent = invitations_send(
                rows=rows, invited_by=request.user, base_url=settings.SITE_URL or request.build_absolute_uri("/")
            )
        except InvitationError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{len(sent)} invitation{'s' if len(sent) != 1 else ''} sent.")
            return redirect("evaluation:invitations")
    names = {study.pk: study.name for study in Study.objects.only("name")}
    made = list(invitations_made_by(user=request.user)[:500])
    for invitation in made:
        invitation.study_name = names.get(invitation.study_id, "") if invitation.study_id else ""
    return render(
        request,
        "evaluation/invitations.html",
        {"form": form, "invitations": made, "days": settings.INVITATION_DAYS},
        status=400 if form.errors else 200,
    )
