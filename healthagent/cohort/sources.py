"""The import sources by name: each turns command options into raw participants and a report."""

from pathlib import Path

from django.conf import settings

from healthagent.cohort.importers.apple import apple_participants
from healthagent.cohort.importers.fitbit import fitbit_participants
from healthagent.cohort.importers.synthetic import synthetic_participants
from healthagent.cohort.importers.tabular import tabular_participants
from healthagent.cohort.importing import CohortImportError


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())
    return path.stat().st_size if path.exists() else 0


def check_upload_sizes(paths: list[Path]) -> None:
    """Refuse any file (or folder) over ``COHORT_IMPORT_MAX_BYTES`` before reading a byte of it."""
    limit = settings.COHORT_IMPORT_MAX_BYTES
    for path in paths:
        size = _size_bytes(path)
        if size > limit:
            raise CohortImportError(
                f"{path.name}: {size:,} bytes is over the import limit of {limit:,} bytes (COHORT_IMPORT_MAX_BYTES)"
            )


def _synthetic(options: dict):
    if options["participants"] < 1 or options["days"] < 1:
        raise CohortImportError("--participants and --days must be at least 1")
    return synthetic_participants(
        participants=options["participants"],
        days=options["days"],
        seed=options["seed"],
        history_days=options["history_days"],
    )


def _csv(options: dict):
    paths = [Path(p) for p in options["paths"]]
    if len(paths) != 1:
        raise CohortImportError(
            "csv takes exactly one signals file (CSV or Parquet); demographics and measurements go in --demographics and --measurements"
        )
    optional = [Path(options[name]) if options.get(name) else None for name in ("demographics", "measurements")]
    check_upload_sizes(paths + [p for p in optional if p])
    return tabular_participants(
        signals=paths[0], demographics=optional[0], measurements=optional[1], timezone=options.get("timezone")
    )


def _fitbit(options: dict):
    paths = [Path(p) for p in options["paths"]]
    check_upload_sizes(paths)
    return fitbit_participants(paths=paths)


def _apple(options: dict):
    paths = [Path(p) for p in options["paths"]]
    check_upload_sizes(paths)
    return apple_participants(paths=paths)


SOURCES = {"synthetic": _synthetic, "csv": _csv, "fitbit": _fitbit, "apple": _apple}


def source_participants(source: str, options: dict):
    return SOURCES[source](options)
