"""Queries: one chat (a list of messages) or one plain-text prompt each, with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Query:
    """One evaluation query. Exactly one of ``messages`` (chat) or ``prompt`` (plain text) is set."""

    id: str
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def stable_id(messages=None, prompt=None) -> str:
    """A short content hash, so the same query gets the same id in every run."""
    payload = json.dumps({"messages": messages, "prompt": prompt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
