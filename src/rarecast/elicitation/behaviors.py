"""Behaviors: what counts as the model "showing the behavior", and how its probability is measured.

Three kinds, after the paper's three estimators:

* :class:`SpecificOutput`: the reply starts with one of a few fixed strings; exact, by teacher forcing.
* :class:`MultipleChoice`: the reply's answer token is the behavior's option; exact, one forward pass.
* :class:`Sampled`: ``k`` sampled replies per query, each judged by a grader (:mod:`rarecast.elicitation.graders`); the
  result is a count of successes out of ``k``.

Every behavior has a human ``name`` and a ``behavior_id``: a hash of its canonical settings (everything that
changes what is measured, not the name), so the store can tell runs of different behaviors apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rarecast.backends.base import Backend, SamplingSettings
from rarecast.elicitation.graders import Grader, make_grader
from rarecast.errors import InputError
from rarecast.files import read_config
from rarecast.queries import Query
from rarecast.store import RunKey


@dataclass(frozen=True)
class Outcome:
    """One query's measured result: ``logp`` (exact) or ``successes``/``trials`` (sampled), plus details."""

    logp: float | None = None
    successes: int | None = None
    trials: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def canonical_json(settings: Mapping[str, Any]) -> str:
    """Sorted, compact JSON: the same settings always give the same text (and hash)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """16-hex-digit SHA-256 of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()[:16]


class BehaviorBase:
    """What all behaviors share: a name, canonical settings, an id, and :meth:`measure`."""

    name: str
    kind: str

    def settings(self) -> dict[str, Any]:
        """Canonical settings (JSON-ready); the name is left out so renaming keeps the id."""
        raise NotImplementedError

    @property
    def behavior_id(self) -> str:
        """Stable hash of :meth:`settings`."""
        return settings_hash(self.settings())

    def to_dict(self) -> dict[str, Any]:
        """The behavior as a YAML/JSON-ready dict that :func:`load_behavior` reads back."""
        return {"name": self.name, **self.settings()}

    def decoding(self) -> dict[str, Any]:
        """The decoding settings that the result depends on (recorded per row)."""
        raise NotImplementedError

    def measure(self, queries: Sequence[Query], backend: Backend) -> list[Outcome]:
        """Measure the behavior for each query with ``backend``."""
        raise NotImplementedError


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (safe + np.log(np.sum(np.exp(a - safe), axis=1, keepdims=True)))[:, 0]


class SpecificOutput(BehaviorBase):
    """The reply starts with any of ``targets``; log p = log of the sum of the targets' probabilities.

    Summing is exact only when the events are disjoint, so the targets must be prefix-free: no target may
    start with another (then the longer one's replies would be counted twice).
    """

    kind = "specific_output"

    def __init__(self, targets: Sequence[str], temperature: float = 1.0, *, name: str = "specific-output"):
        if isinstance(targets, str):
            targets = [targets]
        self.targets = tuple(targets)
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise InputError("specific_output needs 'targets': a list of non-empty strings")
        _check_prefix_free(self.targets)
        _check_temperature(temperature)
        self.temperature = float(temperature)
        self.name = name

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": list(self.targets), "temperature": self.temperature}

    def decoding(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def measure(self, queries: Sequence[Query], backend: Backend) -> list[Outcome]:
        lp = backend.continuation_logprobs(queries, list(self.targets), temperature=self.temperature)
        total = _logsumexp_rows(np.asarray(lp, dtype=float))
        # A sum of probabilities can round a hair above 1 (log p = +1e-16); clip it to the valid range.
        total = np.minimum(total, 0.0)
        details = [{"target_logp": dict(zip(self.targets, map(float, row)))} for row in lp]
        return [Outcome(logp=float(v), details=d) for v, d in zip(total, details)]


def _check_prefix_free(targets: Sequence[str]) -> None:
    for i, a in enumerate(targets):
        for j, b in enumerate(targets):
            if i != j and b.startswith(a):
                what = "is listed twice" if a == b else f"is a prefix of {b!r}"
                raise InputError(
                    f"specific_output targets must be prefix-free: {a!r} {what}, so their probabilities would "
                    f"overlap and the sum would count some replies twice; keep only {a!r}, which already "
                    "covers the longer one"
                )


def _check_temperature(t: float, allow_zero: bool = False) -> None:
    ok = (
        isinstance(t, (int, float))
        and not isinstance(t, bool)
        and math.isfinite(t)
        and (t >= 0 if allow_zero else t > 0)
    )
    if not ok:
        raise InputError(f"temperature must be a finite number {'>=' if allow_zero else '>'} 0, got {t!r}")


class MultipleChoice(BehaviorBase):
    """The reply's answer is ``behavior_option``; options map answer labels (the tokens the model writes,
    e.g. ``"A"``) to their texts.

    All options' answer strings are scored in one forward pass per query (they share the prompt). With
    ``renormalize`` (default) the probability is that of the behavior option among the options only, which
    removes mass the model puts on other tokens; the raw (un-renormalized) option mass is kept in the row
    details either way. ``answer_prefix`` is written before the label (e.g. ``"("`` or ``"Answer: "``).
    With ``append_options`` the options are added to the last user message as ``(A) text`` lines, for query
    sets that do not list them already.
    """

    kind = "multiple_choice"

    def __init__(
        self,
        options: Mapping[str, str],
        behavior_option: str,
        renormalize: bool = True,
        *,
        answer_prefix: str = "",
        append_options: bool = False,
        temperature: float = 1.0,
        name: str = "multiple-choice",
    ):
        if not isinstance(options, Mapping) or len(options) < 2:
            raise InputError("multiple_choice needs 'options': a mapping of at least two answer labels to texts")
        self.options = {str(k): str(v) for k, v in options.items()}
        if str(behavior_option) not in self.options:
            raise InputError(f"behavior_option {behavior_option!r} is not one of the options {list(self.options)}")
        self.behavior_option = str(behavior_option)
        self.renormalize = bool(renormalize)
        self.answer_prefix = str(answer_prefix)
        self.append_options = bool(append_options)
        _check_temperature(temperature)
        self.temperature = float(temperature)
        self.name = name
        # Renormalizing assumes the answer events are disjoint, exactly as summing targets does.
        _check_prefix_free(self.answers())

    def answers(self) -> list[str]:
        """The continuation scored for each option, in option order."""
        return [self.answer_prefix + label for label in self.options]

    def settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "options": self.options,
            "behavior_option": self.behavior_option,
            "renormalize": self.renormalize,
            "answer_prefix": self.answer_prefix,
            "append_options": self.append_options,
            "temperature": self.temperature,
        }

    def decoding(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def option_logprobs(self, queries: Sequence[Query], backend: Backend) -> tuple[np.ndarray, np.ndarray]:
        """``(renormalized, raw)`` log-probabilities of every option, each of shape (n_queries, n_options)."""
        shown = [self._present(q) for q in queries]
        raw = np.asarray(backend.continuation_logprobs(shown, self.answers(), temperature=self.temperature))
        return raw - _logsumexp_rows(raw)[:, None], raw

    def measure(self, queries: Sequence[Query], backend: Backend) -> list[Outcome]:
        renorm, raw = self.option_logprobs(queries, backend)
        col = list(self.options).index(self.behavior_option)
        chosen = renorm if self.renormalize else raw
        mass = np.exp(_logsumexp_rows(raw))
        return [
            Outcome(
                logp=float(min(chosen[i, col], 0.0)),
                details={
                    "renormalized": self.renormalize,
                    "option_mass": float(mass[i]),
                    "option_logp": dict(zip(self.options, map(float, raw[i]))),
                },
            )
            for i in range(len(queries))
        ]

    def _present(self, query: Query) -> Query:
        if not self.append_options:
            return query
        listing = "\n".join(f"({k}) {v}" for k, v in self.options.items())
        if query.prompt is not None:
            return Query(id=query.id, prompt=f"{query.prompt}\n\n{listing}", metadata=query.metadata)
        msgs = [dict(m) for m in query.messages or ()]
        last = (
            max(i for i, m in enumerate(msgs) if m["role"] == "user")
            if any(m["role"] == "user" for m in msgs)
            else len(msgs) - 1
        )
        msgs[last]["content"] = f"{msgs[last]['content']}\n\n{listing}"
        return Query(id=query.id, messages=tuple(msgs), metadata=query.metadata)


class Sampled(BehaviorBase):
    """``k`` sampled replies per query, judged by ``grader``; the result is successes out of ``k``."""

    kind = "sampled"

    def __init__(
        self,
        k: int,
        grader: Grader | Mapping[str, Any],
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 64,
        seed: int = 0,
        *,
        name: str = "sampled",
    ):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"sampled needs k: a whole number >= 1, got {k!r}")
        _check_temperature(temperature, allow_zero=True)
        if not (0 < float(top_p) <= 1):
            raise InputError(f"top_p must lie in (0, 1], got {top_p!r}")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError(f"max_tokens must be a whole number >= 1, got {max_tokens!r}")
        self.k = k
        self.grader = make_grader(grader) if isinstance(grader, Mapping) else grader
        self.sampling = SamplingSettings(float(temperature), float(top_p), int(max_tokens), int(seed))
        self.name = name

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k, "grader": self.grader.spec(), **self.decoding()}

    def decoding(self) -> dict[str, Any]:
        s = self.sampling
        return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": s.seed}

    def measure(self, queries: Sequence[Query], backend: Backend) -> list[Outcome]:
        replies = backend.sample(queries, self.k, self.sampling)
        out = []
        for q, texts in zip(queries, replies):
            verdicts = self.grader.grade(texts, [q] * len(texts))
            out.append(Outcome(successes=int(sum(bool(v) for v in verdicts)), trials=len(texts)))
        return out


Behavior = SpecificOutput | MultipleChoice | Sampled
KINDS = {"specific_output": SpecificOutput, "multiple_choice": MultipleChoice, "sampled": Sampled}
_FIELDS = {
    "specific_output": {"targets", "temperature"},
    "multiple_choice": {"options", "behavior_option", "renormalize", "answer_prefix", "append_options", "temperature"},
    "sampled": {"k", "grader", "temperature", "top_p", "max_tokens", "seed"},
}


def load_behavior(source: str | Path | Mapping[str, Any]) -> Behavior:
    """A behavior from a YAML file (read with ``yaml.safe_load``) or from a dict of the same form.

    ``name`` and ``kind`` are required; unknown keys are rejected so a misspelt setting never passes silently.
    See docs/elicitation.md for the fields of each kind.
    """
    config = read_config(source, "a behavior file (name: ..., kind: ...)")
    spec, file = dict(config.values), config.file
    name, kind = spec.pop("name", None), spec.pop("kind", None)
    if not isinstance(name, str) or not name:
        raise InputError("a behavior needs a 'name' (a non-empty string)", file=file)
    if not isinstance(kind, str) or kind not in KINDS:
        raise InputError(f"'kind' must be one of {sorted(KINDS)}, got {kind!r}", file=file)
    config.check_keys(_FIELDS[kind] | {"name", "kind"})
    try:
        return KINDS[kind](**spec, name=name)
    except InputError as exc:
        raise InputError(exc.problem, file=file) from None
    except TypeError as exc:  # a required field is missing
        raise InputError(f"{kind}: {exc}", file=file) from None


def run_key(backend, behavior) -> RunKey:
    """The key under which ``behavior`` scored by ``backend`` is stored."""
    decoding = dict(behavior.decoding())
    describe = getattr(backend, "describe", None)
    if callable(describe):
        decoding["backend"] = describe()
    return RunKey(
        model=str(backend.model_id),
        revision=str(backend.revision),
        behavior_id=behavior.behavior_id,
        settings_hash=settings_hash(decoding),
        behavior_name=behavior.name,
        behavior_json=canonical_json(behavior.settings()),
        settings_json=canonical_json(decoding),
    )
