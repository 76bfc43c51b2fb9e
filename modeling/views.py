from django.shortcuts import render

from healthagent.roles import Role, role_required


@role_required(Role.ADMIN)
def job_list(request):
    return render(request, "modeling/job_list.html", {"jobs": []})
