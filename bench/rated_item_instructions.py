"""The web server's instructions and database statements per rated item (loadtest/instructions.py: valgrind's
counter on one web process of the production profile, PostgreSQL and Redis real): what a change to the rating path
saves, in a unit the machine's speed does not move. Needs root and the Debian PostgreSQL, Redis and valgrind
packages, as the load test does."""

import shutil
import tempfile
from pathlib import Path

from loadtest.instructions import measure


def run(items: int = 100, warmup: int | None = None, clinicians: int = 120) -> dict:  # None: each rater's first
    work = Path(tempfile.mkdtemp(prefix="bench-instructions."))
    try:
        return measure(items=items, warmup=warmup, clinicians=clinicians, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
