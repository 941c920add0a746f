"""The self-contained HTML report: jinja2 with autoescaping on, plots embedded as base64 PNG.

Query texts come from red-teaming and are hostile by design, so every value reaches the page through
jinja2's escaping (never ``|safe``) and the page's Content-Security-Policy forbids scripts as a second wall.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rarecast.forecasting.best_of_n import INTERVAL_NOTE as BEST_OF_N_NOTE
from rarecast.forecasting.result import ForecastResult
from rarecast.forecasting.risks import RISKS
from rarecast.queries import Query
from rarecast.report.plots import probabilities
from rarecast.report.wording import (
    ELICITATION,
    LOWER_BOUND,
    diagnostics_in_words,
    headlines,
)

RISKIEST = 20


def render(result: ForecastResult, fit, queries: Mapping[str, Query], plots: Mapping[str, bytes]) -> str:
    """The report page for one forecast ``result``, its ``fit``, the query texts by id, and the PNG plots by
    name."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,  # unconditionally on: the report shows adversarial text
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(**context(result, fit, queries, plots))


def context(result: ForecastResult, fit, queries: Mapping[str, Query], plots: Mapping[str, bytes]) -> dict[str, Any]:
    """The template's variables, all plain strings and lists (formatting is done here, not in the template)."""
    prov = result.provenance
    title = prov.get("experiment") or prov.get("behavior") or "forecast"
    riskiest_rows, shared_system = riskiest(fit.scores, queries)
    by_risk = headlines(result.forecasts)
    specific_output = (prov.get("behavior_spec") or {}).get("kind") == "specific_output"
    return {
        "title": title,
        "summary_line": f"{prov.get('behavior', '?')} on {prov.get('model', '?')}: {result.method} tail fit "
        f"of {result.m} {result.kind} scores; rarecast {result.rarecast_version}",
        "m": result.m,
        "level_pct": f"{result.level:.0%}",
        "elicitation": ELICITATION,
        "headlines": [
            {"label": RISKS[risk].label, "definition": RISKS[risk].definition, "sentences": sentences}
            for risk, sentences in by_risk.items()
        ],
        "lower_bound": LOWER_BOUND if specific_output else None,
        "attempts_note": BEST_OF_N_NOTE,
        "plots": {name: base64.b64encode(png).decode("ascii") for name, png in plots.items()},
        "forecasts": [
            {
                "label": r.label,
                "at": r.where(),
                "forecast": f"{r.forecast:.3g}",
                "interval": f"{r.low:.3g} to {r.high:.3g}",
            }
            for r in result.forecasts
        ],
        "warnings": list(result.warnings),
        "riskiest": riskiest_rows,
        "shared_system": shared_system,
        "diagnostics": diagnostics_in_words(result.diagnostics, result.kind),
        # A store's row count is called n there; here n is a deployment size, so the evaluation size is m.
        "provenance": _pairs(
            {
                "evaluation queries (m)": result.m,
                **{k: v for k, v in prov.items() if k != "n"},
                "method": result.method,
                "params": result.params,
                "rarecast_version (report)": result.rarecast_version,
            }
        ),
    }


def riskiest(scores, queries: Mapping[str, Query], limit: int = RISKIEST) -> tuple[list[dict[str, Any]], str | None]:
    """The ``limit`` evaluation queries with the largest probability, with their texts where known, and the
    system prompt they all open with (``None`` unless they all share one), which the rows then leave out."""
    p = probabilities(scores)
    ids = scores.ids or tuple(str(i + 1) for i in range(scores.m))
    top = np.argsort(-p, kind="stable")[:limit]
    systems = {_system_prompt(queries.get(ids[i])) for i in top}
    shared = systems.pop() if len(systems) == 1 else None
    out = []
    for rank, i in enumerate(top, start=1):
        label = f"{p[i]:.3g}" if scores.kind == "exact" else f"{p[i]:.3g} ({scores.successes[i]}/{scores.trials[i]})"
        parts = _parts(ids[i], queries.get(ids[i]))
        out.append({"rank": rank, "p": label, "parts": parts[1:] if shared is not None else parts})
    return out, shared


def _system_prompt(query: Query | None) -> str | None:
    """The system prompt a chat query opens with, if any."""
    if query is None or not query.messages or query.messages[0]["role"] != "system":
        return None
    return query.messages[0]["content"]


def _parts(qid: str, query: Query | None) -> list[dict[str, str]]:
    if query is None:
        return [{"role": "id", "content": f"{qid} (text not recorded)"}]
    if query.prompt is not None:
        return [{"role": "prompt", "content": query.prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in query.messages or ()]


def _pairs(mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key/value rows; nested values as indented JSON."""
    rows = []
    for key, value in mapping.items():
        if value is None or value == {} or value == []:
            continue
        text = value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True, default=str)
        rows.append((str(key), text))
    return rows
