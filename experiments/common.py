"""Helpers shared by the experiment scripts: the machine a run used, result files, markdown tables."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
RESULTS = ROOT / "results"
WORK = ROOT / "work"


def machine() -> dict:
    """What ran the experiment: CPU count, model name, load average when it started, Python and platform."""
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_average_1m": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` (indented, stable key order)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A markdown table of ``rows``; each column is (header, key, format spec). NaN prints as n/a."""
    head = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---:" if f else "---" for _, _, f in columns) + "|"
    cell = lambda v, f: "n/a" if isinstance(v, float) and math.isnan(v) else format(v, f)
    body = ["| " + " | ".join(cell(r[k], f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"
