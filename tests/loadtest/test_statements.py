"""The load test's per-statement figures (loadtest/statements.py): pg_stat_statements' counters per rated item."""

from loadtest.statements import markdown, summarize


def test_statements_are_ranked_by_time_per_rated_item_without_the_load_tests_own():
    rows = [
        {
            "query": "SELECT  a.id\n FROM assignment a WHERE a.id = $1",
            "calls": 200,
            "plan_ms": 4.0,
            "exec_ms": 16.0,
            "rows": 200,
        },
        {
            "query": "SELECT i.id FROM item i WHERE i.study_id = $1",
            "calls": 100,
            "plan_ms": 30.0,
            "exec_ms": 1270.0,
            "rows": 9,
        },
        {"query": "SELECT pg_stat_statements_reset()", "calls": 1, "plan_ms": 0.0, "exec_ms": 500.0, "rows": 1},
        {"query": "UPDATE a SET x = $1 WHERE y = 'a|b'", "calls": 100, "plan_ms": 1.0, "exec_ms": 9.0, "rows": 100},
    ]
    summary = summarize(rows, rated_items=100, top=2)
    assert summary["calls_per_item"] == 4.0  # the reset is the load test's, not the site's
    assert summary["plan_ms_per_item"] == 0.35 and summary["exec_ms_per_item"] == 12.95
    first, second = summary["statements"]
    assert first["query"].startswith("SELECT i.id") and first["exec_ms_per_item"] == 12.7 and first["mean_ms"] == 13.0
    assert second["query"] == "SELECT a.id FROM assignment a WHERE a.id = $1"  # on one line
    assert second["calls_per_item"] == 2.0
    report = markdown({"closed-10": {**summarize(rows, rated_items=100), "load_average_before": [0.5, 0.9, 1.2]}})
    assert "load average before, 1/5/15 min: [0.5, 0.9, 1.2]" in report
    assert "4.0 statements, 0.35 ms planning and 12.95 ms execution per rated item" in report
    assert "'a\\|b'" in report  # a pipe in a statement does not break the table
