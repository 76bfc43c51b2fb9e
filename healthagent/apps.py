from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_admin_group_permissions(sender, using="default", **kwargs):
    """The admin role manages users, cohorts, studies and jobs in the Django admin too.

    Permissions are created by a post_migrate handler of their own, so they are granted here,
    after every migration run, rather than in a data migration that would run before they exist.
    """
    from django.contrib.auth.models import Group, Permission

    from healthagent.roles import Role

    group = Group.objects.using(using).filter(name=Role.ADMIN).first()
    if group is not None:
        group.permissions.set(Permission.objects.using(using).all())


class HealthAgentConfig(AppConfig):
    name = "healthagent"
    verbose_name = "Health agent"

    def ready(self):
        # Connected for every app: the last app's permissions exist only after its own migrate.
        post_migrate.connect(grant_admin_group_permissions, dispatch_uid="healthagent.grant_admin_group_permissions")
        from django.contrib.auth.signals import user_logged_in

        from healthagent.middleware import session_renewed_at_login

        user_logged_in.connect(session_renewed_at_login, dispatch_uid="healthagent.session_renewed_at_login")
