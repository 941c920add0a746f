"""OpenAI-compatible HTTP backend: vLLM, SGLang, llama.cpp servers, or any server speaking that API.

Model string: ``openai:<base url>/<model>``, e.g. ``openai:http://127.0.0.1:8080/v1/smollm2``. The base URL
runs up to and including ``/v1`` when the URL has one (so model names may contain slashes:
``openai:http://host:8000/v1/meta-llama/Llama-3.1-8B-Instruct``), else up to the last slash.

Exact scoring uses the completions endpoint: the chat is rendered to text with the served model's chat
template, the continuation appended, and the server asked to echo the prompt with its token log-probs
(``echo=true, logprobs=1``, the legacy OpenAI form, which llama-cpp-python and vLLM return) or for vLLM's
``prompt_logprobs``. The continuation's tokens are found by their character offsets, and the offsets are
checked against the text that was sent: a token that straddles the prompt/continuation boundary, or offsets
that do not add up, fail the query instead of giving a wrong number. Sampling uses chat completions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rarecast.backends.base import SamplingSettings
from rarecast.backends.chat_template import ChatTokenizer, Renderer, jinja_renderer, tokenizer_renderer
from rarecast.backends.http import (
    BackendError,
    HttpClient,
    PartialResults,
    QueryError,
    RetryPolicy,
    ServerError,
    api_key_from_env,
)

if TYPE_CHECKING:  # backends take queries but never build them, so queries may import backends
    from rarecast.queries import Query

LOGPROB_MODES = ("echo", "prompt_logprobs")
# Scoring requests that may each sample end-of-text before one generated token verifies the alignment.
_GENERATION_DRAWS = 4


def make_backend(spec: str, **opts: Any) -> OpenAIBackend:
    """Build an :class:`OpenAIBackend` from ``openai:<base url>/<model>``; ``opts`` are its keyword options."""
    base_url, model = parse_spec(spec)
    return OpenAIBackend(base_url, opts.pop("model", model), **opts)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``openai:<base url>/<model>`` (the ``openai:`` prefix is optional) into base URL and model."""
    url = spec[len("openai:") :] if spec.startswith("openai:") else spec
    if not url.startswith(("http://", "https://")):
        raise BackendError(f"model string {spec!r}: expected openai:http(s)://<host>[:port]/v1/<model>")
    head, sep, model = url.partition("/v1/")
    if sep:
        base_url = head + "/v1"
    else:
        base_url, _, model = url.rstrip("/").rpartition("/")
        if "//" not in base_url or base_url.endswith("/"):
            raise BackendError(f"model string {spec!r} names no model after the base URL")
    if not model:
        raise BackendError(f"model string {spec!r} names no model after the base URL")
    return base_url, model


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP server.

    Options: ``chat_template`` (Jinja text or file, with ``bos_token``/``eos_token``) or ``tokenizer`` (a Hugging
    Face tokenizer, model id, directory or ``.gguf`` file) to render chats for scoring, else the server's
    ``/apply-template``; ``logprobs_mode`` ``"echo"`` or ``"prompt_logprobs"`` (vLLM); ``api_key_env`` (default
    ``OPENAI_API_KEY``; the key is read from the environment only); ``max_in_flight``, ``timeout_s``,
    ``connect_timeout_s``, ``retry`` (a :class:`RetryPolicy`); ``max_n`` samples per request; ``revision``, the
    model revision to record (the server does not report one).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        tokenizer: ChatTokenizer | str | None = None,
        logprobs_mode: str = "echo",
        api_key_env: str = "OPENAI_API_KEY",
        max_in_flight: int = 8,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        max_n: int = 16,
        revision: str = "unpinned",
        **unknown: Any,
    ):
        _reject_unknown(unknown)
        if logprobs_mode not in LOGPROB_MODES:
            raise BackendError(f"logprobs_mode must be one of {LOGPROB_MODES}, not {logprobs_mode!r}")
        self.model = model
        self.model_id = f"openai:{base_url.rstrip('/')}/{model}"
        self.revision = revision
        self.logprobs_mode = logprobs_mode
        self.max_n = max(1, max_n)
        key = api_key_from_env(api_key_env)
        self.client = HttpClient(
            base_url,
            headers={"Authorization": f"Bearer {key}"} if key else None,
            secret=key,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
            max_in_flight=max_in_flight,
        )
        self._render = self._pick_renderer(chat_template, bos_token, eos_token, tokenizer)

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model_id!r}, logprobs_mode={self.logprobs_mode!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    # -- exact scoring ---------------------------------------------------------------------------------------

    def continuation_logprobs(
        self, queries: Sequence[Query], continuations: Sequence[str], *, temperature: float = 1.0
    ) -> np.ndarray:
        """Natural-log probability of each continuation as the start of the reply to each query.

        Returns shape ``(len(queries), len(continuations))``. Raises :class:`PartialResults` (rows of failed
        queries are NaN) when some queries failed, :class:`ServerError` when none can be served.
        """
        if temperature != 1.0:
            raise BackendError(
                "OpenAI-compatible servers return log-probs at temperature 1 only (the full distribution needed "
                f"to rescale to temperature {temperature} is not sent); score with temperature=1.0"
            )
        tasks = [(lambda q=q: self._score_query(q, continuations)) for q in queries]
        outcomes = self.client.map(tasks)
        results = np.full((len(queries), len(continuations)), np.nan)
        errors: dict[int, QueryError] = {}
        for i, (query, outcome) in enumerate(zip(queries, outcomes)):
            if isinstance(outcome, QueryError):
                errors[i] = outcome.for_query(query.id)
            else:
                results[i] = outcome
        if errors:
            raise PartialResults(results, errors)
        return results

    def _score_query(self, query: Query, continuations: Sequence[str]) -> list[float]:
        prompt = self._prompt_text(query)
        return [self._score_one(prompt, c) for c in continuations]

    def _score_one(self, prompt: str, continuation: str) -> float:
        if not continuation:
            return 0.0  # the empty continuation is certain
        text = prompt + continuation
        payload: dict[str, Any] = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 1.0}
        if self.logprobs_mode == "echo":
            payload.update(echo=True, logprobs=1)
        else:
            payload.update(prompt_logprobs=0)
        # An end-of-text draw leaves nothing to check the alignment against; draw again (bounded).
        for draw in range(_GENERATION_DRAWS):
            body = self.client.post_json("completions", {**payload, "seed": draw})
            if self.logprobs_mode == "prompt_logprobs":
                return continuation_logprob_from_prompt_logprobs(body, text, len(prompt))
            try:
                return continuation_logprob_from_echo(body, text, len(prompt))
            except _NothingGenerated:
                if draw == _GENERATION_DRAWS - 1:
                    raise
        raise AssertionError("unreachable: the last draw returns or raises")

    def _prompt_text(self, query: Query) -> str:
        if query.prompt is not None:
            return query.prompt  # a plain-text query is scored as written, with no chat template
        return self._render(list(query.messages or ()))

    def _pick_renderer(
        self, chat_template: str | None, bos: str, eos: str, tokenizer: ChatTokenizer | str | None
    ) -> Renderer:
        if chat_template is not None:
            return jinja_renderer(chat_template, bos_token=bos, eos_token=eos)
        if tokenizer is not None:
            return tokenizer_renderer(tokenizer)
        return self._server_template

    def _server_template(self, messages: Sequence[dict[str, str]]) -> str:
        # llama.cpp's llama-server serves /apply-template at its root, beside /v1.
        root = self.client.base_url.removesuffix("/v1")
        try:
            body = self.client.post_json(f"{root}/apply-template", {"messages": list(messages)})
        except ServerError as exc:
            raise ServerError(
                f"{exc}; this server cannot render chats for scoring: pass chat_template=<jinja text or file> "
                "or tokenizer=<HF id, directory or .gguf file> for the served model"
            ) from None
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise QueryError(f"{root}/apply-template answered without a 'prompt' string")
        return prompt

    # -- sampling --------------------------------------------------------------------------------------------

    def sample(self, queries: Sequence[Query], k: int, settings: SamplingSettings) -> list[list[str]]:
        """``k`` replies per query: chat completions for chats, completions for plain prompts.

        Requests ask for up to ``max_n`` replies each and are repeated until ``k`` arrived (some servers
        ignore ``n``). With a seed, request ``r`` of a query uses ``seed + index of its first reply``, so
        repeated requests do not repeat the same replies. Raises :class:`PartialResults` (failed queries
        are ``None``) or :class:`ServerError` like :meth:`continuation_logprobs`.
        """
        chunks = [
            (qi, start, min(self.max_n, k - start)) for qi in range(len(queries)) for start in range(0, k, self.max_n)
        ]
        tasks = [(lambda qi=qi, s=s, n=n: self._sample_chunk(queries[qi], s, n, settings)) for qi, s, n in chunks]
        outcomes = self.client.map(tasks)
        replies: list[list[str] | None] = [[] for _ in queries]
        errors: dict[int, QueryError] = {}
        for (qi, _, _), outcome in zip(chunks, outcomes):
            if isinstance(outcome, QueryError):
                errors.setdefault(qi, outcome.for_query(queries[qi].id))
                replies[qi] = None
            elif (got := replies[qi]) is not None:
                got.extend(outcome)
        if errors:
            raise PartialResults(replies, errors)
        return replies  # type: ignore[return-value]

    def _sample_chunk(self, query: Query, start: int, n: int, settings: SamplingSettings) -> list[str]:
        out: list[str] = []
        # Each request returns at least one reply or fails, so this loop runs at most n times.
        while len(out) < n:
            payload = self._sampling_payload(query, n - len(out), settings, seed_offset=start + len(out))
            path = "completions" if query.prompt is not None else "chat/completions"
            texts = _reply_texts(self.client.post_json(path, payload), chat=query.prompt is None)
            if not texts:
                raise QueryError(f"{path} returned no choices")
            out.extend(texts[: n - len(out)])
        return out

    def _sampling_payload(self, query: Query, n: int, settings: SamplingSettings, seed_offset: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
        }
        if settings.seed is not None:
            payload["seed"] = settings.seed + seed_offset
        if query.prompt is not None:
            payload["prompt"] = query.prompt
        else:
            payload["messages"] = list(query.messages or ())
        return payload


# -- parsing the servers' log-prob forms ---------------------------------------------------------------------


def continuation_logprob_from_echo(body: Mapping[str, Any], text: str, boundary: int) -> float:
    """Sum of the log-probs of the tokens of ``text[boundary:]`` from an ``echo=true, max_tokens=1`` reply.

    The reply's ``logprobs`` holds ``tokens``, ``token_logprobs`` and ``text_offset`` for the echoed text and
    the generated tokens (``usage.completion_tokens`` of them). The continuation's tokens are found from the
    end of the echoed text, not from absolute offsets, because llama-cpp-python leaves special tokens' text
    out of its offsets. Three checks stand between the reply and a number: the generated tokens must spell
    the generated text (llama-cpp-python shifts every log-prob by one token when the prompt does not start
    with its BOS token, and then they do not), the continuation must start on a token boundary, and the
    offsets of its tokens must step by their lengths.
    """
    choice = _first_choice(body)
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        raise QueryError("the reply has no 'logprobs' object; does this server support echo with logprobs?")
    offsets, values, tokens = (logprobs.get(k) for k in ("text_offset", "token_logprobs", "tokens"))
    if not (isinstance(offsets, list) and isinstance(values, list) and isinstance(tokens, list)):
        raise QueryError("the reply's logprobs lack text_offset, token_logprobs or tokens lists")
    if not len(offsets) == len(values) == len(tokens) or not all(isinstance(t, str) for t in tokens):
        raise QueryError("the reply's logprobs lists differ in length or hold tokens that are not text")
    echoed_end = len(tokens) - _generated_count(body, choice)
    _check_generated_tail(choice, text, tokens[max(echoed_end, 0) :])
    first = _continuation_start(tokens[:echoed_end], text[boundary:])
    for i in range(max(first, 1), echoed_end):
        if offsets[i] != offsets[i - 1] + len(tokens[i - 1]):
            raise QueryError("the echoed text_offset values do not step by the token lengths; cannot place tokens")
    return _sum_logprobs(values[first:echoed_end])


def continuation_logprob_from_prompt_logprobs(body: Mapping[str, Any], text: str, boundary: int) -> float:
    """Sum of the log-probs of the tokens of ``text[boundary:]`` from vLLM's ``prompt_logprobs`` form.

    ``choices[0]["prompt_logprobs"]`` is a list with ``None`` for the first token, then per prompt token a map
    from token id to ``{"logprob", "rank", "decoded_token"}`` whose first entry is that prompt token (vLLM puts
    the actual token first; with ``prompt_logprobs=0`` it is the only one). The continuation's tokens are
    found from the end of the text and must spell it exactly.
    """
    entries = _first_choice(body).get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) < 2:
        raise QueryError("the reply has no 'prompt_logprobs' list; is this a vLLM server?")
    tokens: list[str] = []
    values: list[Any] = []
    for entry in entries[1:]:
        actual = next(iter(entry.values()), None) if isinstance(entry, Mapping) else None
        if not isinstance(actual, Mapping) or not isinstance(actual.get("decoded_token"), str):
            raise QueryError("a prompt_logprobs entry is empty or lacks 'decoded_token'; the server must detokenize")
        tokens.append(actual["decoded_token"])
        values.append(actual.get("logprob"))
    first = _continuation_start(tokens, text[boundary:])
    return _sum_logprobs(values[first:])


class _NothingGenerated(QueryError):
    """The server generated no token (it sampled end-of-text), so the log-prob alignment cannot be checked."""


def _generated_count(body: Mapping[str, Any], choice: Mapping[str, Any]) -> int:
    usage = body.get("usage")
    count = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    if not isinstance(count, int) or count < 0:
        raise QueryError("the reply has no usage.completion_tokens; cannot tell echoed from generated tokens")
    if count == 0:
        raise _NothingGenerated("the server generated no token after the text, so its log-probs cannot be checked")
    return count


def _check_generated_tail(choice: Mapping[str, Any], text: str, tail_tokens: list[str]) -> None:
    echoed = choice.get("text")
    if not isinstance(echoed, str) or not echoed.startswith(text):
        raise QueryError("the echoed reply text does not start with the text sent")
    if "".join(tail_tokens) != echoed[len(text) :]:
        raise QueryError(
            "the log-prob list is not aligned with the text: its last tokens are not the generated ones "
            "(llama-cpp-python shifts log-probs by one token when a prompt does not start with the BOS token; "
            "use a chat template that starts with it, or another server)"
        )


def _continuation_start(tokens: list[str], continuation: str) -> int:
    """Index of the first token of ``continuation``, which the last tokens of ``tokens`` must spell exactly."""
    covered, i = 0, len(tokens)
    while i > 0 and covered < len(continuation):
        i -= 1
        covered += len(tokens[i])
    if covered != len(continuation):
        raise QueryError(
            "no token starts where the continuation does: the tokenizer merges the end of the prompt with "
            "the start of the continuation, so its probability is not a sum of token log-probs"
        )
    if "".join(tokens[i:]) != continuation:
        raise QueryError("the returned tokens do not spell the continuation that was sent")
    return i


def _sum_logprobs(values: list[Any]) -> float:
    if not values:
        raise QueryError("the server returned no tokens for the continuation")
    total = 0.0
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value > 1e-6:
            raise QueryError(f"the server returned {value!r} as a token log-prob")
        total += float(value)
    return min(total, 0.0)


def _first_choice(body: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise QueryError("the reply has no 'choices'")
    return choices[0]


def _reply_texts(body: Mapping[str, Any], *, chat: bool) -> list[str]:
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise QueryError("the reply has no 'choices' list")
    texts = []
    for choice in choices:
        text = _choice_text(choice, chat)
        if text is None:
            raise QueryError("a choice in the reply carries no text")
        texts.append(text)
    return texts


def _choice_text(choice: Any, chat: bool) -> str | None:
    if not isinstance(choice, Mapping):
        return None
    if not chat:
        return choice.get("text") if isinstance(choice.get("text"), str) else None
    message = choice.get("message")
    if not isinstance(message, Mapping):
        return None
    # A refusal arrives in its own field with content null; it is the model's reply all the same.
    for key in ("content", "refusal"):
        if isinstance(message.get(key), str):
            return message[key]
    return None


def _reject_unknown(unknown: Mapping[str, Any]) -> None:
    if "api_key" in unknown:
        raise BackendError("pass the API key through an environment variable (api_key_env=<NAME>), not as an option")
    if unknown:
        raise BackendError(f"unknown option(s) for the OpenAI-compatible backend: {sorted(unknown)}")


__all__ = [
    "OpenAIBackend",
    "make_backend",
    "parse_spec",
    "continuation_logprob_from_echo",
    "continuation_logprob_from_prompt_logprobs",
]
