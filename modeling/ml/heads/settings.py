"""The head search's settings, declared once: the command line (``heads compare``) and the site's job form
(``modeling/kinds/heads.py``) are both made from this dataclass."""

from dataclasses import dataclass

from modeling.ml.common.settings import setting
from modeling.ml.data.labels import TASKS

TASK_CHOICES = [(task.name, f"{task.name} ({task.kind})") for task in TASKS]
PROPOSER_CHOICES = [
    ("random", "random (baseline)"),
    ("evolution", "evolution of the best specs"),
    ("tpe", "Optuna TPE"),
    ("llm", "language model (the agent variant below)"),
]


@dataclass
class HeadSearchSettings:
    tasks: list[str] = setting(
        ["hypertension", "diabetes", "sleep_apnea", "systolic_bp"], "Tasks to search heads for.", choices=TASK_CHOICES
    )
    proposers: list[str] = setting(
        ["random", "evolution", "tpe"],
        "The classroom: each proposes every round from one shared leaderboard.",
        choices=PROPOSER_CHOICES,
    )
    llm_temperature: float = setting(
        0.7,
        "Sampling temperature of the language-model proposer (0 = greedy: a repeated prompt repeats its spec; each "
        "proposal has its own seed).",
        minimum=0.0,
        maximum=2.0,
        label="Language-model temperature",
    )
    budget: int = setting(12, "Trainings per task.", minimum=1, maximum=500)
    participants: int = setting(
        150,
        "New simulated participants with labels, split 60/20/20 (train/validation/test).",
        minimum=20,
        maximum=100_000,
    )
    days: int = setting(2, minimum=1, maximum=60)
    seed: int = setting(3000, "Another seed than pre-training: participants the model never saw.", minimum=0)
