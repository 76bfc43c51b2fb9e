from channels.db import database_sync_to_async

from evaluation.selectors import studies_visible_to
from evaluation.services import study_group
from healthagent.consumers import RoleGroupConsumer
from healthagent.roles import Role


class StudyDashboardConsumer(RoleGroupConsumer):
    """Researchers watching a study's dashboard: told when a rating commits, to refresh.
    A study the user may not read (restricted, or missing) is refused like a missing one."""

    allowed_roles = (Role.RESEARCHER, Role.ADMIN)

    async def subscription_groups(self):
        study_id = self.scope["url_route"]["kwargs"]["study_id"]
        user = self.scope["user"]
        exists = await database_sync_to_async(lambda: studies_visible_to(user=user).filter(pk=study_id).exists())()
        return [study_group(study_id)] if exists else None
