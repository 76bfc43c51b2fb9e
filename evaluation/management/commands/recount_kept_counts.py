"""``manage.py recount_kept_counts [--check]``: the counts PostgreSQL keeps by trigger (an item's raters,
``ItemRaters``; a study's raters and results items, ``StudyCounts``) counted again from their rows, and set right where
they differ.

The triggers keep them in every writing transaction, whatever writes the rows, so they only go wrong by a way around
the triggers: rows loaded with ``loaddata`` *and* their counts with them (the models' docstrings say to leave the
counts out of a dump), a trigger disabled for a bulk repair, a hand-edited table. The hand-out reads an item's kept
raters to choose the next item, and each rating page the study's, so a wrong count misleads both. The source tables are
locked against writes (``SHARE``: reads go on) while they are counted and the counts set, so no trigger's change
is lost between the two. On SQLite (the embedded default) nothing is kept: the site counts.
"""

from importlib import import_module

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

# The conditions the triggers count by, from the migrations that made them: one definition.
ITEM_COUNTED = import_module("evaluation.migrations.0018_item_raters").COUNTED
RESULTS_COUNTED = import_module("evaluation.migrations.0019_study_counts").COUNTED

ITEM_DIFFERENCES = f"""
WITH counted AS (
    SELECT a.item_id, COUNT(*) AS raters FROM evaluation_assignment a WHERE {ITEM_COUNTED.format(row="a")}
    GROUP BY a.item_id
)
SELECT COALESCE(c.item_id, k.item_id), COALESCE(k.raters, 0), COALESCE(c.raters, 0)
FROM counted c FULL JOIN evaluation_itemraters k ON k.item_id = c.item_id
WHERE COALESCE(k.raters, 0) <> COALESCE(c.raters, 0)
ORDER BY 1
"""
STUDY_DIFFERENCES = f"""
WITH counted AS (
    SELECT s.id AS study_id,
        (SELECT COUNT(*) FROM evaluation_study_clinicians e WHERE e.study_id = s.id) AS raters,
        (SELECT COUNT(*) FROM evaluation_studyitem i WHERE i.study_id = s.id AND {RESULTS_COUNTED.format(row="i")})
            AS results_items
    FROM evaluation_study s
)
SELECT c.study_id, COALESCE(k.raters, 0), c.raters, COALESCE(k.results_items, 0), c.results_items
FROM counted c LEFT JOIN evaluation_studycounts k ON k.study_id = c.study_id
WHERE COALESCE(k.raters, 0) <> c.raters OR COALESCE(k.results_items, 0) <> c.results_items
ORDER BY 1
"""
# Rows of the kept tables are only ever made by the triggers (and the migrations' first count), so the sources are
# the tables whose writes fire them.
SOURCES = ("evaluation_assignment", "evaluation_study_clinicians", "evaluation_studyitem", "evaluation_study")


class Command(BaseCommand):
    help = "Count the kept item and study counts again from their rows and set right those that differ (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="only say which counts differ; exit 1 if any does (nothing is changed)"
        )

    def handle(self, *args, check: bool = False, **options):
        if connection.vendor != "postgresql":
            self.stdout.write(
                "Nothing to recount: on this database (not PostgreSQL) the site counts, it keeps no counts."
            )
            return
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(SOURCES)} IN SHARE MODE")
            cursor.execute(ITEM_DIFFERENCES)
            items = cursor.fetchall()
            cursor.execute(STUDY_DIFFERENCES)
            studies = cursor.fetchall()
            for item, kept, counted in items:
                self.stdout.write(f"item #{item}: {kept} raters kept, {counted} counted")
            for study, kept_raters, raters, kept_items, results_items in studies:
                self.stdout.write(
                    f"study #{study}: {kept_raters} raters and {kept_items} results items kept, "
                    f"{raters} and {results_items} counted"
                )
            if not check:
                for item, _, counted in items:
                    cursor.execute(
                        "INSERT INTO evaluation_itemraters (item_id, raters) VALUES (%s, %s) "
                        "ON CONFLICT (item_id) DO UPDATE SET raters = EXCLUDED.raters",
                        [item, counted],
                    )
                for study, _, raters, _, results_items in studies:
                    cursor.execute(
                        "INSERT INTO evaluation_studycounts (study_id, raters, results_items) VALUES (%s, %s, %s) "
                        "ON CONFLICT (study_id) DO UPDATE SET raters = EXCLUDED.raters, "
                        "results_items = EXCLUDED.results_items",
                        [study, raters, results_items],
                    )
        if check and (items or studies):
            raise CommandError(f"{len(items)} item and {len(studies)} study counts differ from their rows")
        if items or studies:  # set right: with --check, differences were the error above
            self.stdout.write(
                self.style.SUCCESS(f"{len(items)} item and {len(studies)} study counts set right; the rest agree")
            )
        else:
            self.stdout.write(self.style.SUCCESS("Every kept count agrees with its rows."))
