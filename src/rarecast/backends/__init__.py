"""Model backends, chosen by a model string ``<prefix>:<spec>``.

``hf:smollm2`` (embedded default), ``hf:<hub id or local path>``, ``openai:<base url>/<model>``,
``anthropic:<model>``. Each backend module exposes ``make_backend(spec: str, **opts)`` and is imported only
when its prefix is used, so the HTTP backends never import torch and the hf backend never imports httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from rarecast.backends.base import Backend, SamplingSettings
from rarecast.errors import InputError

# prefix -> module that defines make_backend(spec, **opts)
BACKENDS: dict[str, str] = {
    "hf": "rarecast.backends.hf",
    "openai": "rarecast.backends.openai",
    "anthropic": "rarecast.backends.anthropic",
}
_FACTORIES: dict[str, Callable[..., Backend]] = {}


def register_backend(prefix: str, factory: Callable[..., Backend]) -> None:
    """Add a backend for model strings ``<prefix>:<spec>``; ``factory(spec, **opts)`` builds it."""
    _FACTORIES[prefix] = factory


def get_backend(model: str, **opts: Any) -> Backend:
    """The backend for a model string such as ``hf:smollm2``; ``opts`` go to the backend's factory.

    Raises :class:`~rarecast.errors.InputError` for a string without a known prefix.
    """
    prefix, sep, spec = str(model).partition(":")
    known = sorted(set(BACKENDS) | set(_FACTORIES))
    if not sep or prefix not in known:
        raise InputError(f"model {model!r} must start with one of {', '.join(p + ':' for p in known)}")
    if prefix in _FACTORIES:
        return _FACTORIES[prefix](spec, **opts)
    return importlib.import_module(BACKENDS[prefix]).make_backend(spec, **opts)


__all__ = ["BACKENDS", "Backend", "SamplingSettings", "get_backend", "register_backend"]
