"""The demo cohort as the site holds it, simulated by a twin with and without a statin for 90 days.

Imports the demo cohort as ``make demo`` does (into a scratch SQLite database), reads each participant's record
from the database as the twin page does, and prints, per participant with a measured LDL: the latest measured
value, the lowest and highest day-0 value over arms and samples, and the predicted statin effect at day 90.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/demo_cohort_statin.py docs/results/twin-tiny/model
"""

import json
import os
import sys
import time
from pathlib import Path

import django
import numpy as np

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthagent.settings")
os.environ["DATABASE_URL"] = "sqlite:////tmp/demo_check.sqlite3"
django.setup()

from django.core.management import call_command  # noqa: E402  (after django.setup)

from healthagent.cohort.importers.synthetic import synthetic_participants  # noqa: E402
from healthagent.cohort.importing import cohort_import  # noqa: E402
from healthagent.management.commands.demo_setup import DEMO_COHORT  # noqa: E402
from healthagent.models import Cohort  # noqa: E402
from modeling.ml.twin.generate import simulate  # noqa: E402
from modeling.ml.twin.tokens import BIOMARKER_NAMES  # noqa: E402
from modeling.ml.twin.training import load_twin  # noqa: E402
from modeling.selectors import participant_record  # noqa: E402


def main(model_dir: Path) -> None:
    call_command("migrate", verbosity=0)
    if not Cohort.objects.filter(name=DEMO_COHORT["name"]).exists():
        participants, report = synthetic_participants(
            participants=DEMO_COHORT["participants"], days=DEMO_COHORT["days"], seed=DEMO_COHORT["seed"]
        )
        cohort_import(
            name=DEMO_COHORT["name"],
            source=Cohort.Source.SYNTHETIC,
            participants=participants,
            source_report=report,
            description="check",
        )
    cohort = Cohort.objects.get(name=DEMO_COHORT["name"])
    model, tokenizer = load_twin(model_dir)
    records = [participant_record(participant=p) for p in cohort.participants.order_by("pk")]
    started = time.time()
    rollouts = simulate(
        model,
        tokenizer,
        [tokenizer.encode(record) for record in records],
        arms=[None, "statin"],
        horizon_days=90,
        samples=8,
        seed=1,
    )
    ldl = BIOMARKER_NAMES.index("ldl")
    rows = []
    for index, record in enumerate(records):
        measured = sorted((m for m in record.measurements if m["name"] == "ldl"), key=lambda m: m["day"])
        if not measured:
            continue
        day0 = rollouts.expected[index, :, :, 0, ldl]
        effect = (rollouts.expected[index, 1, :, -1, ldl] - rollouts.expected[index, 0, :, -1, ldl]).mean()
        rows.append((measured[-1]["value"], float(day0.min()), float(day0.max()), float(effect)))
    table = np.array(rows)
    print(f"{len(table)} of {len(records)} with a measured LDL; {time.time() - started:.1f} s")
    print("largest |day 0 - latest measured|:", np.abs(table[:, 1:3] - table[:, :1]).max())
    print(
        f"statin effect at 90 days: min {table[:, 3].min():.1f} median {np.median(table[:, 3]):.1f} "
        f"max {table[:, 3].max():.1f}; lowered for {(table[:, 3] < 0).sum()} of {len(table)}"
    )
    print(json.dumps([[round(value, 1) for value in row] for row in table.tolist()]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
