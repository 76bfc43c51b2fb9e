from django.shortcuts import render

from healthagent.roles import Role, role_required


@role_required(Role.CLINICIAN)
def queue(request):
    """The clinician's start page: their assigned items, next first."""
    return render(request, "evaluation/queue.html", {"assignments": []})


@role_required(Role.RESEARCHER, Role.ADMIN)
def study_list(request):
    return render(request, "evaluation/study_list.html", {"studies": []})
