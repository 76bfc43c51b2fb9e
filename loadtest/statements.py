"""What PostgreSQL spends per rated item, statement by statement (``python -m loadtest --pg-statements``).

The load test's database is started with ``pg_stat_statements`` (planning tracked too); its counters are reset
before each shape and read after it, and each statement's calls and time are divided by the ratings the shape
acknowledged. The times are the backend's wall time in planning and execution (a lock wait counts, parsing and the
protocol round trip do not): they say which statements to remove or make cheaper, while the load figures' CPU
column says what PostgreSQL costs in all. The extension itself takes a little CPU: load figures come from a run
without it.
"""

from collections.abc import Iterable

# The server options that load the extension (a restart-time setting: passed to ``pg_ctl start``).
SERVER_OPTIONS = (
    "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
    " -c pg_stat_statements.track=all -c pg_stat_statements.max=2000"
)

_READ = """
SELECT query, calls, total_plan_time, total_exec_time, rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def create_extension(connection) -> None:
    connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def reset(connection) -> None:
    connection.execute("SELECT pg_stat_statements_reset()")


def read(connection) -> list[dict]:
    return [
        {"query": query, "calls": calls, "plan_ms": plan, "exec_ms": execute, "rows": rows}
        for query, calls, plan, execute, rows in connection.execute(_READ).fetchall()
    ]


def _one_line(query: str, width: int = 160) -> str:
    text = " ".join(query.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize(rows: Iterable[dict], rated_items: int, top: int = 25) -> dict:
    """Per rated item: statements, calls, planning and execution milliseconds in all and for the ``top`` statements
    by total time (the load test's own reads, of pg_stat_statements and the integrity check, are left out)."""
    kept = [row for row in rows if "pg_stat_statements" not in row["query"]]
    per = max(rated_items, 1)
    ranked = sorted(kept, key=lambda row: row["plan_ms"] + row["exec_ms"], reverse=True)
    return {
        "rated_items": rated_items,
        "calls_per_item": round(sum(row["calls"] for row in kept) / per, 2),
        "plan_ms_per_item": round(sum(row["plan_ms"] for row in kept) / per, 3),
        "exec_ms_per_item": round(sum(row["exec_ms"] for row in kept) / per, 3),
        "statements": [
            {
                "query": _one_line(row["query"]),
                "calls_per_item": round(row["calls"] / per, 2),
                "plan_ms_per_item": round(row["plan_ms"] / per, 3),
                "exec_ms_per_item": round(row["exec_ms"] / per, 3),
                "mean_ms": round((row["plan_ms"] + row["exec_ms"]) / max(row["calls"], 1), 3),
            }
            for row in ranked[:top]
        ],
    }


def markdown(summaries: dict[str, dict]) -> str:
    lines = [
        "## What PostgreSQL spends per rated item, by statement (pg_stat_statements)",
        "",
        "Backend time in planning and execution, per rated item (parsing and the round trip are not in it).",
        "",
    ]
    for shape, summary in summaries.items():
        load = summary.get("load_average_before", "not recorded")
        lines += [
            f"### {shape}: {summary['rated_items']:,} rated items (load average before, 1/5/15 min: {load})",
            "",
            f"{summary['calls_per_item']} statements, {summary['plan_ms_per_item']} ms planning and "
            f"{summary['exec_ms_per_item']} ms execution per rated item.",
            "",
            "| calls / item | plan ms / item | exec ms / item | mean ms | statement |",
            "|---:|---:|---:|---:|---|",
        ]
        for row in summary["statements"]:
            query = row["query"].replace("|", "\\|")
            lines.append(
                f"| {row['calls_per_item']} | {row['plan_ms_per_item']} | {row['exec_ms_per_item']} "
                f"| {row['mean_ms']} | `{query}` |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"
