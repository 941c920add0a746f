"""The forecast as one typed object: what `rarecast forecast` prints, forecast.json holds and the report shows.

:func:`rarecast.forecasting.fit.forecast_result` makes a :class:`ForecastResult`; the terminal table, the HTML
report and the JSON output all read that one object, and :meth:`ForecastResult.to_dict` is the JSON layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rarecast.forecasting.risks import RISKS


@dataclass(frozen=True)
class ForecastRow:
    """One forecast: ``risk`` at ``at`` (n deployment queries, or the threshold tau), with its interval."""

    risk: str
    at: float
    forecast: float
    low: float
    high: float
    level: float

    @property
    def argument(self) -> str:
        """``n`` or ``tau``: what :attr:`at` is."""
        return RISKS[self.risk].argument

    @property
    def label(self) -> str:
        return RISKS[self.risk].label

    def where(self) -> str:
        """``n = 1e+04`` or ``tau = 0.5``, for tables."""
        return f"tau = {self.at:g}" if self.argument == "tau" else f"n = {self.at:.3g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "risk": self.risk,
            self.argument: self.at,
            "forecast": self.forecast,
            "low": self.low,
            "high": self.high,
            "level": self.level,
        }


@dataclass
class ForecastResult:
    """A fitted forecast with everything needed to read and trust it: the rows, the fit's diagnostics and
    warnings, and the provenance of its scores. ``scoring`` (from ``rarecast run``) and ``best_of_n`` (from
    ``--attempts``) are added by the commands that make them."""

    method: str
    quantile: float | None
    params: dict[str, Any]
    m: int
    kind: str
    forecasts: list[ForecastRow]
    diagnostics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    rarecast_version: str = ""
    source: str | None = None
    scoring: dict[str, Any] | None = None
    best_of_n: dict[str, Any] | None = None

    @property
    def level(self) -> float:
        """The intervals' level (0.9 when there are no rows)."""
        return self.forecasts[0].level if self.forecasts else 0.9

    def rows(self, risk: str) -> list[ForecastRow]:
        return [row for row in self.forecasts if row.risk == risk]

    def to_dict(self) -> dict[str, Any]:
        """Plain data in forecast.json's layout (the optional parts only when present)."""
        out: dict[str, Any] = {
            "method": self.method,
            "quantile": self.quantile,
            "params": self.params,
            "m": self.m,
            "kind": self.kind,
            "forecasts": [row.to_dict() for row in self.forecasts],
            "diagnostics": self.diagnostics,
            "warnings": self.warnings,
            "provenance": self.provenance,
            "rarecast_version": self.rarecast_version,
        }
        extras = {"source": self.source, "scoring": self.scoring, "best_of_n": self.best_of_n}
        out.update({k: v for k, v in extras.items() if v is not None})
        return out
