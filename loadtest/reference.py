"""A fixed pure-Python workload timed in CPU: how fast this machine runs the kind of work a request does.

Load figures from two machines, or from one shared machine on two days, differ by the machine as much as by the
code: the same commit measured 13.6 and 21 ms of CPU per rated item in sessions 25 and 26. The load test and
``make bench`` record this workload's CPU time beside their figures, so that a figure can be read in the
machine's own units (figure / reference) and two runs compared by it.

The work is the request path's kind, in one thread: a JSON round trip of a page-sized document, a regular
expression over text, small objects made and sorted, strings formatted. It takes tens of milliseconds; the
fastest of several repeats is kept (the least disturbed by anything else on the machine).
"""

import json
import re
import time
from dataclasses import dataclass

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True, slots=True)
class _Row:
    key: int
    name: str
    value: float


def _document() -> dict:
    rows = [{"id": n, "name": f"participant {n:05d}", "values": [n * 0.5 + k for k in range(12)]} for n in range(300)]
    return {"study": "reference", "rows": rows, "text": "the agent's answer, with its heart rate and sleep " * 40}


def _work(document: dict) -> int:
    encoded = json.dumps(document, separators=(",", ":"))
    decoded = json.loads(encoded)
    words = _WORD.findall(decoded["text"])
    rows = sorted(
        (_Row(row["id"], row["name"], sum(row["values"]) / len(row["values"])) for row in decoded["rows"]),
        key=lambda row: (-row.value, row.name),
    )
    lines = [f"{row.key}\t{row.name}\t{row.value:.3f}" for row in rows]
    return len(encoded) + len(words) + len("\n".join(lines))


def reference_cpu_ms(*, repeats: int = 7, rounds: int = 20) -> float:
    """CPU milliseconds of ``rounds`` rounds of the workload, the fastest of ``repeats``."""
    document = _document()
    _work(document)  # warm: the first round pays for imports and caches
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(rounds):
            _work(document)
        best = min(best, time.thread_time() - started)
    return round(best * 1000, 1)


if __name__ == "__main__":
    print(f"reference workload: {reference_cpu_ms()} ms of CPU")
