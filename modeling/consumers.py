from channels.db import database_sync_to_async

from healthagent.consumers import RoleGroupConsumer
from healthagent.roles import Role
from modeling.jobs import JOBS_GROUP, job_group, job_progress_payload
from modeling.models import Job
from modeling.selectors import simulations_visible_to


class JobListConsumer(RoleGroupConsumer):
    """Admins watching the job list: every job's state changes arrive here."""

    allowed_roles = (Role.ADMIN,)

    async def subscription_groups(self):
        return [JOBS_GROUP]


class JobConsumer(RoleGroupConsumer):
    """One job's page: progress, metrics and state as the worker reports them."""

    allowed_roles = (Role.ADMIN,)

    async def subscription_groups(self):
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        exists = await database_sync_to_async(Job.objects.filter(pk=job_id).exists)()
        return [job_group(job_id)] if exists else None


class SimulationJobConsumer(RoleGroupConsumer):
    """A simulate job's progress on the twin page, for researchers too: the job's events with only the
    fields the twin page's status view gives them (no worker, device or metrics)."""

    allowed_roles = (Role.RESEARCHER, Role.ADMIN)

    async def subscription_groups(self):
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        user = self.scope["user"]
        exists = await database_sync_to_async(simulations_visible_to(user).filter(pk=job_id).exists)()
        return [job_group(job_id)] if exists else None

    def payload(self, payload: dict) -> dict:
        return job_progress_payload(payload)
