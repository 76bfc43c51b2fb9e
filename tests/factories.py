import importlib

import factory
from django.apps import apps
from django.contrib.auth.models import User

from healthagent.roles import user_assign_role

DEFAULT_PASSWORD = "a-long-test-password"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def role(user, create, role, **kwargs):
        user.save()
        if role is not None:
            user_assign_role(user=user, role=role)


def ensure_reference_data():
    """The rows data migrations create (agent variants, rubrics), which a transactional test's flush removes."""
    for module, function in (("healthagent.migrations.0004_default_variants", "create_default_variants"),
                             ("evaluation.migrations.0002_default_rubrics", "create_rubrics")):
        getattr(importlib.import_module(module), function)(apps, None)
