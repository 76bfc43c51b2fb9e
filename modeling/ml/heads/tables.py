"""The head search's result tables, as the job page and the reports show them: best head against the linear probe per
task, and each proposer's contribution."""

from typing import Any

from modeling.ml.heads.spec import describe_spec


def _metric(result: dict[str, Any] | None, metric: str) -> str:
    value = (result or {}).get(metric)
    if not value or value[0] is None:
        return "—"
    return f"{value[0]:.3f} ({value[1]:.3f}–{value[2]:.3f})"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def head_tables(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's tables: best head against the linear probe per task, and each proposer's contribution."""
    rows = []
    for result in results:
        head = result["head"] or {}
        decision = result.get("decision") or {}
        advantage = (
            "—"
            if decision.get("difference") is None
            else f"{decision['difference']:+.3f} ({_number(decision['difference_ci'][0])} to {_number(decision['difference_ci'][1])})"
        )
        rows.append(
            [
                result["task"],
                describe_spec(head.get("spec")),
                result["validation_metric"],
                _number(head.get("validation")),
                _number(result["probe"]["validation"]),
                _number(decision.get("head")),
                _number(decision.get("probe")),
                advantage,
                "**uses the head**" if result["uses_head"] else "keeps the probe",
                result["metric"],
                _metric(head.get("test"), result["metric"]),
                _metric(result["probe"]["test"], result["metric"]),
            ]
        )
    tables = [
        {
            "title": "Best head vs linear probe",
            "kind": "head_vs_probe",
            "summary": "The search picks its best head on the search fold. The decision is made on the decision fold, which the "
            "search never saw: the head is used only if its advantage's 95 % CI lies above 0. The test participants "
            "(scored once) only report.",
            "columns": [
                "task",
                "best head",
                "validation metric",
                "best head (search fold)",
                "linear probe (search fold)",
                "best head (decision fold)",
                "linear probe (decision fold)",
                "head − probe (decision fold, 95 % CI)",
                "decision",
                "test metric",
                "best head (test, 95 % CI)",
                "linear probe (test, 95 % CI)",
            ],
            "rows": rows,
        }
    ]
    for result in results:
        tables.append(
            {
                "title": f"Proposers: {result['task']}",
                "kind": "proposers",
                "summary": f"Stopped: {result['stopped']}; {result['trainings']} trainings in {result['search_s']:.0f} s.",
                "columns": [
                    "proposer",
                    "proposals",
                    "trainings",
                    "repeats",
                    "invalid",
                    "best score",
                    "raised the best",
                ],
                "rows": [
                    [
                        row["proposer"],
                        str(row["proposals"]),
                        str(row["trainings"]),
                        str(row["repeats"]),
                        str(row["invalid"]),
                        _number(row["best_score"]),
                        str(row["raised_best"]),
                    ]
                    for row in result["proposers"]
                ],
            }
        )
    return tables
