from healthagent.consumers import RoleGroupConsumer
from healthagent.roles import Role

JOBS_GROUP = "jobs"


class JobListConsumer(RoleGroupConsumer):
    """Admins watching the job list: every job's state changes arrive here."""

    allowed_roles = (Role.ADMIN,)

    async def subscription_groups(self):
        return [JOBS_GROUP]
