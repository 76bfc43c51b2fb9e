from django.db import migrations

DEFAULT_VARIANTS = (
    ("grounded agent", "grounded", {}, "Offline rules over the participant's data; cites every number it uses."),
    ("LLM only", "transformers", {"model": "smollm2", "max_new_tokens": 220, "temperature": 0.0},
     "SmolLM2-135M-Instruct, run locally, given the same data as text; no grounding beyond the prompt."),
    ("grounded + LLM phrasing", "grounded_phrased",
     {"language_model": {"backend": "transformers", "config": {"model": "smollm2", "max_new_tokens": 48}}},
     "The grounded agent's recommendations with an opening sentence written by SmolLM2."),
)


def create_default_variants(apps, schema_editor):
    AgentVariant = apps.get_model("healthagent", "AgentVariant")
    for name, backend, config, description in DEFAULT_VARIANTS:
        AgentVariant.objects.get_or_create(name=name, defaults={"backend": backend, "config": config, "description": description})


def delete_default_variants(apps, schema_editor):
    AgentVariant = apps.get_model("healthagent", "AgentVariant")
    AgentVariant.objects.filter(name__in=[v[0] for v in DEFAULT_VARIANTS], recommendations__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("healthagent", "0003_agent")]
    operations = [migrations.RunPython(create_default_variants, delete_default_variants)]
