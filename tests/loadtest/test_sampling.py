"""The load test's sampling profile (loadtest/sampling.py): py-spy's collapsed stacks summed into where the web
workers' CPU goes."""

import subprocess
import sys
import time

from loadtest.sampling import SamplingProfile, markdown, summarize


def test_samples_are_counted_where_the_innermost_known_frame_is(tmp_path):
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text(
        "\n".join(
            [
                # a query compiled inside a template: the compiler is innermost, so it takes the samples
                "run (gunicorn/workers/gthread.py:1);render (django/template/base.py:2);as_sql (django/db/models/sql/compiler.py:3) 6",
                # the standard library's regular expressions called by the template engine count as template rendering
                "run (gunicorn/workers/gthread.py:1);render (django/template/base.py:2);match (re/__init__.py:4) 3",
                "run (gunicorn/workers/gthread.py:1);wait (selectors.py:5) 1",
            ]
        )
        + "\n"
    )
    summary = summarize(collapsed)
    assert summary["samples"] == 10
    assert summary["buckets_percent"] == {
        "ORM: compiling SQL": 60.0,
        "template rendering": 30.0,
        "HTTP server (gunicorn or granian: parsing, sockets, threads)": 10.0,
    }
    assert summary["top_self_percent"][0] == ("as_sql (django/db/models/sql/compiler.py:3)", 60.0)
    assert summary["site_inclusive_percent"] == []  # none of the site's own frames
    report = markdown({"closed-10": {**summary, "load_average_before": [0.42, 0.8, 1.1]}})
    assert "load average before, 1/5/15 min: [0.42, 0.8, 1.1]" in report and "| 60.0 % | ORM: compiling SQL |" in report


def test_a_busy_process_is_sampled(tmp_path):
    """py-spy (requirements-test.txt) attaches with ptrace: root here, as the load test runs."""
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: sum(range(1000))"]
    )
    try:
        with SamplingProfile(busy.pid, tmp_path / "stacks.txt", rate=100):
            time.sleep(2)
    finally:
        busy.kill()
    assert summarize(tmp_path / "stacks.txt")["samples"] > 50


def test_the_site_s_functions_are_counted_wherever_they_are_on_the_stack(tmp_path):
    collapsed = tmp_path / "stacks.txt"
    view = "assignment_submit (evaluation/views.py:9)"  # counted without its line number
    collapsed.write_text(
        f"run (gunicorn/workers/gthread.py:1);{view};execute (psycopg/cursor.py:2) 3\n"
        # two lines of one function (a recursion, or two calls) count once per sample
        f"run (gunicorn/workers/gthread.py:1);{view};{view.replace(':9', ':12')};render (django/template/base.py:2) 1\n"
        "run (gunicorn/workers/gthread.py:1);wait (selectors.py:5) 4\n"
    )
    summary = summarize(collapsed)
    assert summary["site_inclusive_percent"] == [("assignment_submit (evaluation/views.py)", 50.0)]
    assert "inclusive time" in markdown({"closed-50": summary})
