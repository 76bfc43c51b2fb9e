"""The import sources by name: each turns command options into raw participants and a report."""

from healthagent.cohort.importing import CohortImportError
from healthagent.cohort.importers.synthetic import synthetic_participants


def _synthetic(options: dict):
    if options["participants"] < 1 or options["days"] < 1:
        raise CohortImportError("--participants and --days must be at least 1")
    return synthetic_participants(participants=options["participants"], days=options["days"], seed=options["seed"], history_days=options["history_days"])


SOURCES = {"synthetic": _synthetic}


def source_participants(source: str, options: dict):
    return SOURCES[source](options)
