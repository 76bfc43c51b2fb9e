"""The physical backup routine of the README on PostgreSQL: pg_dump --format=custom of the live
database, pg_restore into a new database, and the ratings there are the ratings here."""

import shutil
import subprocess

import psycopg
import pytest
from django.db import connection

from evaluation.assignment import assignment_next
from evaluation.services import rating_submit
from tests.conftest import REQUIRE_SERVICES, service_missing

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

RATINGS = "SELECT r.id, r.scores::text, r.comment, r.revision, a.rater_id, a.item_id FROM evaluation_rating r JOIN evaluation_assignment a ON a.id = r.assignment_id ORDER BY r.id"
REVISIONS = "SELECT rating_id, number, scores::text, comment, created_at FROM evaluation_ratingrevision ORDER BY rating_id, number"


@pytest.fixture
def postgres_tools():
    if connection.vendor != "postgresql":
        if not REQUIRE_SERVICES:
            pytest.skip("PostgreSQL is not configured (DATABASE_URL is not a postgres:// URL)")
        service_missing(f"the database is {connection.vendor}, not PostgreSQL")
    tools = {name: shutil.which(name) for name in ("pg_dump", "pg_restore")}
    if not all(tools.values()):
        service_missing("pg_dump / pg_restore are not installed (Debian package postgresql-client)")
    return tools


def conninfo(name: str) -> str:
    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=name,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=str(settings["PORT"]) if settings["PORT"] else None,
    )


def rows(info: str, query: str) -> list[tuple]:
    with psycopg.connect(info) as restored, restored.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_pg_dump_and_pg_restore_round_trip(postgres_tools, grounded_study, tmp_path):
    for clinician in grounded_study.clinicians.order_by("pk"):
        assignment = assignment_next(study=grounded_study, rater=clinician)
        rating_submit(
            assignment_id=assignment.pk,
            rater=clinician,
            scores={"relevance": 3, "context": 4, "safety": 5},
            comment="kept",
        )
        rating_submit(
            assignment_id=assignment.pk,
            rater=clinician,
            scores={"relevance": 2, "context": 4, "safety": 5},
            comment="revised",
        )
    live = conninfo(connection.settings_dict["NAME"])
    dump = tmp_path / "healthagent.dump"
    subprocess.run(
        [postgres_tools["pg_dump"], "--format=custom", f"--file={dump}", f"--dbname={live}"], check=True, timeout=120
    )

    copy = f"{connection.settings_dict['NAME']}_restore"
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{copy}"')
        admin.execute(f'CREATE DATABASE "{copy}"')
    try:
        subprocess.run(
            [postgres_tools["pg_restore"], "--no-owner", "--exit-on-error", f"--dbname={conninfo(copy)}", str(dump)],
            check=True,
            timeout=120,
        )
        assert len(rows(live, RATINGS)) == 3
        assert rows(conninfo(copy), RATINGS) == rows(live, RATINGS)
        assert rows(conninfo(copy), REVISIONS) == rows(live, REVISIONS)
    finally:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
