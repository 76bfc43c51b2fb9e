import django.db.models.deletion
from django.db import migrations, models

# Whether an item counts among its study's results items (evaluation.selectors.rater_progress: not dropped).
COUNTED = "{row}.kind = 'results' AND {row}.dropped_at IS NULL"


def kept(column: str, counted: str) -> str:
    """The trigger function that keeps ``column`` of a study's counts for the rows of one table that are ``counted``
    (a condition on ``{row}``). It takes the old row's one away and adds the new row's, as ItemRaters' trigger does
    (migration 0018): a decrement is an UPDATE, which does nothing once the study's row is gone (a study's deletion),
    and only a row made or moved adds one."""
    values = ", ".join("1" if name == column else "0" for name in ("raters", "results_items"))
    return f"""
CREATE FUNCTION evaluation_study_{column}_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND {counted.format(row="OLD")} THEN
        UPDATE evaluation_studycounts SET {column} = {column} - 1 WHERE study_id = OLD.study_id;
    END IF;
    IF TG_OP <> 'DELETE' AND {counted.format(row="NEW")} THEN
        INSERT INTO evaluation_studycounts (study_id, raters, results_items) VALUES (NEW.study_id, {values})
        ON CONFLICT (study_id) DO UPDATE SET {column} = evaluation_studycounts.{column} + 1;
    END IF;
    RETURN NULL;
END
$$;"""


# The enrolments (every row counts) and the items (COUNTED ones).
CREATE = f"""{kept("raters", "TRUE")}
CREATE TRIGGER evaluation_study_raters_made_or_deleted AFTER INSERT OR DELETE ON evaluation_study_clinicians
    FOR EACH ROW EXECUTE FUNCTION evaluation_study_raters_kept();
CREATE TRIGGER evaluation_study_raters_moved AFTER UPDATE OF study_id ON evaluation_study_clinicians
    FOR EACH ROW WHEN (OLD.study_id IS DISTINCT FROM NEW.study_id) EXECUTE FUNCTION evaluation_study_raters_kept();

{kept("results_items", COUNTED)}
CREATE TRIGGER evaluation_study_results_items_made_or_deleted AFTER INSERT OR DELETE ON evaluation_studyitem
    FOR EACH ROW EXECUTE FUNCTION evaluation_study_results_items_kept();
-- Only an update that changes whether (or for which study) the item counts: dropped, restored, its kind or study.
CREATE TRIGGER evaluation_study_results_items_changed AFTER UPDATE OF study_id, kind, dropped_at ON evaluation_studyitem
    FOR EACH ROW WHEN (
        ({COUNTED.format(row="OLD")}) IS DISTINCT FROM ({COUNTED.format(row="NEW")})
        OR OLD.study_id IS DISTINCT FROM NEW.study_id
    )
    EXECUTE FUNCTION evaluation_study_results_items_kept();

INSERT INTO evaluation_studycounts (study_id, raters, results_items)
    SELECT s.id,
        (SELECT COUNT(*) FROM evaluation_study_clinicians e WHERE e.study_id = s.id),
        (SELECT COUNT(*) FROM evaluation_studyitem i WHERE i.study_id = s.id AND {COUNTED.format(row="i")})
    FROM evaluation_study s;
"""

DROP = """
DROP TRIGGER evaluation_study_results_items_changed ON evaluation_studyitem;
DROP TRIGGER evaluation_study_results_items_made_or_deleted ON evaluation_studyitem;
DROP FUNCTION evaluation_study_results_items_kept();
DROP TRIGGER evaluation_study_raters_moved ON evaluation_study_clinicians;
DROP TRIGGER evaluation_study_raters_made_or_deleted ON evaluation_study_clinicians;
DROP FUNCTION evaluation_study_raters_kept();
"""


def kept_by_postgresql(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def not_kept(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0018_item_raters"),
    ]

    operations = [
        migrations.CreateModel(
            name="StudyCounts",
            fields=[
                (
                    "study",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="evaluation.study",
                    ),
                ),
                ("raters", models.PositiveIntegerField(default=0)),
                ("results_items", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(kept_by_postgresql, not_kept),
    ]
