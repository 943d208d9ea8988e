"""Benchmark: the fault matrix — every test in tests/faults, run for real — and the
reliability table its tests recorded.

Runs ``pytest tests/faults`` with a report file; each test appends one row (fault, when,
what happened, releases lost / doubled / half-done, time to recover). Writes the table
into docs/reliability.md (between its markers) and prints the machine and versions, the
table, and as its last line one JSON object with ``faults_injected``, ``releases_lost``,
``releases_doubled``, ``half_done``, ``max_recovery_s``, ``tests_failed`` and, for
comparison, ``baseline_s`` (the same clusters and deploys with no fault injected:
tests/faults/test_baseline.py) next to ``matrix_s``.

Usage: python bench/faults.py [--no-docs] [pytest arguments...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- faults table: begin -->", "<!-- faults table: end -->"


def table(rows: list[dict[str, object]]) -> str:
    """The markdown table of the recorded outcomes."""
    lines = [
        "| fault | when | what happened | lost | doubled | half-done | recovered in |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recovery = "—" if r["recovery_s"] is None else f"{float(str(r['recovery_s'])):.1f} s"
        cells = [str(r[k]).replace("|", "\\|") for k in ("fault", "when", "happened")]
        lines.append(f"| {' | '.join(cells)} | {r['lost']} | {r['doubled']} | "
                     f"{r['half_done']} | {recovery} |")  # fmt: skip
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/reliability.md")
    args, pytest_args = parser.parse_known_args()
    print(json.dumps(_common.machine()))
    with tempfile.TemporaryDirectory(prefix="tenantry-faults-") as work:
        report = Path(work) / "report.jsonl"
        started = time.monotonic()
        status = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults",
             *pytest_args],
            cwd=ROOT, env={**os.environ, "TENANTRY_RELIABILITY_REPORT": str(report)},
            check=False,
        ).returncode  # fmt: skip
        took = time.monotonic() - started
        lines = report.read_text().splitlines() if report.exists() else []
        rows = [json.loads(line) for line in lines]
    baseline = [r for r in rows if r["fault"] == "none (baseline)"]
    faults = [r for r in rows if r["fault"] != "none (baseline)"]
    rendered = table(rows)
    print(rendered)
    if not args.no_docs:
        write_doc(rendered)
    recoveries = [float(r["recovery_s"]) for r in faults if r["recovery_s"] is not None]
    print(json.dumps({
        "faults_injected": len(faults),
        "releases_lost": sum(int(r["lost"]) for r in faults),
        "releases_doubled": sum(int(r["doubled"]) for r in faults),
        "half_done": sum(int(r["half_done"]) for r in faults),
        "max_recovery_s": round(max(recoveries), 2) if recoveries else None,
        "baseline_s": round(float(baseline[0]["recovery_s"]), 2) if baseline else None,
        "matrix_s": round(took, 1),
        "tests_failed": status != 0,
    }))  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
