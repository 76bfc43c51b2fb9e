"""Decoding settings for the two default language-model variants, measured on the demo's two busy cores.

SmolLM2 with two torch threads beside a training run wrote about 0.2 tokens/s and failed every answer at
the 120 s limit; with one thread, a shorter budget, at most three recommendations (a stop before a
fourth) and an end at the first paragraph break after 60 tokens it finishes (README "The agent").
A repetition penalty keeps it from looping on a phrase; the phrased variant keeps its short budget (it
uses the first finished sentence). Only variants still on the old defaults change.
"""

from django.db import migrations

OLD_LLM_ONLY = {"model": "smollm2", "max_new_tokens": 220, "temperature": 0.0}
NEW_LLM_ONLY = {"model": "smollm2", "max_new_tokens": 160, "temperature": 0.0, "repetition_penalty": 1.1, "stop": ["\n4."],
                "paragraph_stop_after_tokens": 60, "torch_threads": 1}
OLD_PHRASED = {"language_model": {"backend": "transformers", "config": {"model": "smollm2", "max_new_tokens": 48}}}
NEW_PHRASED = {"language_model": {"backend": "transformers", "config": {"model": "smollm2", "max_new_tokens": 48, "repetition_penalty": 1.1,
                                                                         "torch_threads": 1}}}
CHANGES = (("LLM only", OLD_LLM_ONLY, NEW_LLM_ONLY), ("grounded + LLM phrasing", OLD_PHRASED, NEW_PHRASED))


def set_configs(apps, old_index: int, new_index: int):
    AgentVariant = apps.get_model("healthagent", "AgentVariant")
    for change in CHANGES:
        variant = AgentVariant.objects.filter(name=change[0]).first()
        if variant is not None and variant.config == change[old_index]:  # a researcher's own settings are left alone
            variant.config = change[new_index]
            variant.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("healthagent", "0006_audit_study_item_actions")]
    operations = [migrations.RunPython(lambda apps, schema_editor: set_configs(apps, 1, 2), lambda apps, schema_editor: set_configs(apps, 2, 1))]
