from django.apps import AppConfig
from django.db.models.signals import post_migrate

# What the admin role may not do in the Django admin (least privilege, issue 23): edit permissions or groups (the
# roles are groups: an admin gives roles, not permissions), read sessions (their data is other users' log-ins), touch
# API tokens (only their owner makes or revokes one, on the account page), edit content types or rewrite the admin's
# own history. Superusers (``createsuperuser``, on the server) keep everything.
ADMIN_GROUP_WITHHELD = {
    "auth": {"add_permission", "change_permission", "delete_permission", "add_group", "change_group", "delete_group"},
    "admin": {"add_logentry", "change_logentry", "delete_logentry"},
    "sessions": None,  # None: every permission of the app
    "contenttypes": None,
    "knox": None,
}


def admin_group_permissions(using: str = "default"):
    """The permissions the admin group holds: every model's, less :data:`ADMIN_GROUP_WITHHELD`."""
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    withheld = Q(pk__in=[])
    for app_label, codenames in ADMIN_GROUP_WITHHELD.items():
        in_app = Q(content_type__app_label=app_label)
        withheld |= in_app if codenames is None else in_app & Q(codename__in=codenames)
    return Permission.objects.using(using).exclude(withheld)


def grant_admin_group_permissions(sender, using="default", **kwargs):
    """The admin role manages users, cohorts, studies and jobs in the Django admin too, with the permissions of
    :func:`admin_group_permissions` (the change form of a user also hides superuser status and single permissions
    from an admin who is not a superuser, and refuses to edit a superuser: healthagent/admin.py).

    Permissions are created by a post_migrate handler of their own, so they are granted here,
    after every migration run, rather than in a data migration that would run before they exist.
    """
    from django.contrib.auth.models import Group

    from healthagent.roles import Role

    group = Group.objects.using(using).filter(name=Role.ADMIN).first()
    if group is not None:
        group.permissions.set(admin_group_permissions(using))


class HealthAgentConfig(AppConfig):
    name = "healthagent"
    verbose_name = "Health agent"

    def ready(self):
        # Connected for every app: the last app's permissions exist only after its own migrate.
        post_migrate.connect(grant_admin_group_permissions, dispatch_uid="healthagent.grant_admin_group_permissions")
        from django.contrib.auth.signals import user_logged_in

        from healthagent.middleware import session_renewed_at_login

        user_logged_in.connect(session_renewed_at_login, dispatch_uid="healthagent.session_renewed_at_login")
        from django.core import checks

        from healthagent.sso import sso_settings_check

        checks.register(sso_settings_check)
        from healthagent.celery import before_workers_start_register
        from healthagent.webhooks import webhook_requeue_lines

        before_workers_start_register(webhook_requeue_lines)  # serve queues again what a stopped worker left
        from django.db.models.signals import post_delete

        from healthagent.models import (
            Cohort,
            CohortUpload,
            Participant,
            cohort_folder_delete_on_commit,
            participant_files_delete_on_commit,
            upload_file_delete_on_commit,
        )

        post_delete.connect(upload_file_delete_on_commit, sender=CohortUpload, dispatch_uid="healthagent.upload_file")
        post_delete.connect(
            participant_files_delete_on_commit, sender=Participant, dispatch_uid="healthagent.participant_files"
        )
        post_delete.connect(cohort_folder_delete_on_commit, sender=Cohort, dispatch_uid="healthagent.cohort_folder")
        from django.conf import settings

        if settings.SESSION_ENGINE == "healthagent.sessions":  # else a session delete stays one statement
            from django.contrib.sessions.models import Session

            from healthagent.sessions import session_cache_evict

            post_delete.connect(session_cache_evict, sender=Session, dispatch_uid="healthagent.session_cache_evict")
        from django.db.backends.signals import connection_created

        from healthagent.dbpool import pool_checks_if_stirred

        connection_created.connect(pool_checks_if_stirred, dispatch_uid="healthagent.pool_checks_if_stirred")
        from django.test.signals import setting_changed

        from healthagent.middleware import content_security_policy_changed

        setting_changed.connect(content_security_policy_changed, dispatch_uid="healthagent.content_security_policy")
