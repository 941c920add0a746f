"""Turning chat messages into the prompt text a completions endpoint scores.

Exact scoring over HTTP sends ``prompt + continuation`` to a plain completions endpoint, so the chat must be
rendered to text exactly as the served model's chat template renders it. Three sources, in order of
preference: a Jinja template given by the user, a Hugging Face tokenizer's ``apply_chat_template``, or the
server's own ``/apply-template`` endpoint (llama.cpp's ``llama-server``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

Messages = Sequence[dict[str, str]]
Renderer = Callable[[Messages], str]


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer used here."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def jinja_renderer(template: str, *, bos_token: str = "", eos_token: str = "") -> Renderer:
    """A renderer for a Hugging Face style Jinja chat template (the text, or a path to a ``.jinja`` file).

    The environment mirrors transformers' (sandboxed, ``trim_blocks``, ``lstrip_blocks``, ``raise_exception``,
    a ``tojson`` that keeps non-ASCII text) so that the same template gives the same prompt.
    """
    if "{" not in template and Path(template).is_file():
        template = Path(template).read_text(encoding="utf-8")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    compiled = env.from_string(template)

    def render(messages: Messages) -> str:
        return compiled.render(
            messages=list(messages), add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
        )

    return render


def tokenizer_renderer(tokenizer: ChatTokenizer | str) -> Renderer:
    """A renderer from a Hugging Face tokenizer, or from a model id, directory or ``.gguf`` file to load one from."""
    if isinstance(tokenizer, str):
        tokenizer = _load_tokenizer(tokenizer)

    def render(messages: Messages) -> str:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    return render


def _load_tokenizer(name: str) -> ChatTokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # transformers is in the optional "hf" extra
        raise ImportError(
            "tokenizer=<name> needs transformers (pip install 'rarecast[hf]'); or pass chat_template=<jinja text>"
        ) from exc
    path = Path(name)
    if path.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(name)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)
