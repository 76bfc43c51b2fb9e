from channels.db import database_sync_to_async

from healthagent.consumers import RoleGroupConsumer
from healthagent.roles import Role
from modeling.jobs import JOBS_GROUP, job_group
from modeling.models import Job


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
