"""Queries written by a model: the paper's way of making red-team queries.

A generator model (any backend with ``sample``) is asked ``instruction`` repeatedly; each reply, cleaned of
list markers and quotes, becomes one query. Replies that repeat an earlier query (compared case- and
space-insensitively) are dropped. The output JSONL is appended to after every round, and a rerun reads it
first and only adds what is missing, so generation is resumable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rarecast.backends import SamplingSettings, get_backend
from rarecast.errors import InputError
from rarecast.files import Config
from rarecast.queries import Query, load_queries, stable_id
from rarecast.queries.building import query_record

_LIST_MARKER = re.compile(r"^\s*(?:(?:[-*•]|\d+[.)]|query:|question:|prompt:)\s*)+", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: ``n`` queries from ``generator`` asked ``instruction``.

    Each query is the generated text as the user message, after ``system`` when one is given. ``per_round``
    replies are sampled per call; generation gives up after ``max_rounds`` rounds without enough new queries.
    """

    generator: str
    instruction: str
    n: int
    system: str | None = None
    temperature: float = 1.0
    max_tokens: int = 96
    seed: int = 0
    per_round: int = 16
    max_rounds: int = 200
    model_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GenerationRequest:
        """Parse a mapping (e.g. an experiment's ``queries: {generate: ...}``); InputError names the key."""
        if not isinstance(raw, Mapping):
            raise InputError("must be a mapping with generator, instruction and n")
        Config(dict(raw)).check_keys({f.name for f in fields(cls)}, required=("generator", "instruction", "n"))
        request = cls(**raw)
        request.check()
        return request

    def check(self) -> None:
        """Raise InputError for a value that cannot work."""
        if not isinstance(self.generator, str) or ":" not in self.generator:
            raise InputError(f"generator must be a model string such as hf:smollm2, got {self.generator!r}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise InputError("instruction must be non-empty text")
        for name in ("n", "max_tokens", "per_round", "max_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise InputError(f"temperature must be a number > 0 (generation samples), got {self.temperature!r}")

    def as_query(self, text: str) -> Query:
        """The query a generated text becomes."""
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": text}
        ]
        meta = {"generator": self.generator, "instruction": self.instruction}
        return Query(id=stable_id(messages=messages), messages=tuple(messages), metadata=meta)


@dataclass(frozen=True)
class GenerationReport:
    """Counts of one :func:`generate_queries` call."""

    existing: int
    added: int
    duplicates: int
    empty: int
    sampled: int


def clean(text: str) -> str:
    """The query in a generated reply: its first non-empty line without list markers or wrapping quotes."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = _LIST_MARKER.sub("", line).strip()
    while len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    return line


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def generate_queries(request: GenerationRequest, out: str | Path, *, progress: bool = True) -> GenerationReport:
    """Append generated queries to ``out`` until it holds ``request.n``; returns what was done.

    Raises InputError when ``max_rounds`` rounds pass without reaching ``n`` (the generator keeps repeating
    itself); what was generated so far stays in the file.
    """
    out = Path(out)
    have = load_queries(out) if out.is_file() and out.stat().st_size else []
    seen = {_norm(_user_text(q)) for q in have}
    report = dict(existing=len(have), added=0, duplicates=0, empty=0, sampled=0)
    if len(have) >= request.n:
        return GenerationReport(**report)
    backend = get_backend(request.generator, **request.model_options)
    ask = Query(id="generator-instruction", messages=({"role": "user", "content": request.instruction},))
    with _Bar(request.n, len(have), progress) as bar, open(out, "a", encoding="utf-8") as fh:
        for round_ in range(request.max_rounds):
            # A new seed per round (offset by what exists) so a resumed run does not redraw the same replies.
            settings = SamplingSettings(
                request.temperature, 1.0, request.max_tokens, request.seed + len(have) + report["added"] + round_ * 7919
            )
            for reply in backend.sample([ask], request.per_round, settings)[0]:
                report["sampled"] += 1
                text = clean(reply)
                key = _norm(text)
                if not text:
                    report["empty"] += 1
                elif key in seen:
                    report["duplicates"] += 1
                elif len(have) + report["added"] < request.n:
                    seen.add(key)
                    fh.write(json.dumps(query_record(request.as_query(text)), ensure_ascii=False) + "\n")
                    report["added"] += 1
                    bar.advance()
            fh.flush()
            if len(have) + report["added"] >= request.n:
                return GenerationReport(**report)
    raise InputError(
        f"only {len(have) + report['added']} distinct queries after {request.max_rounds} rounds "
        f"of {request.per_round} samples; raise max_rounds or temperature, or vary the instruction",
        file=str(out),
    )


def _user_text(query: Query) -> str:
    if query.prompt is not None:
        return query.prompt
    return next((m["content"] for m in reversed(query.messages or ()) if m["role"] == "user"), "")


class _Bar:
    """A rich progress bar (rate and ETA) over queries added; a no-op when disabled."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            self.bar = Progress(
                TextColumn("generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task("generate", total=total, completed=done)

    def __enter__(self) -> _Bar:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self) -> None:
        if self.enabled:
            self.bar.update(self.task, advance=1)
