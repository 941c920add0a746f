"""YAML configuration files (behaviors, query specs, experiments), read safely with errors naming file and line."""

from __future__ import annotations

from pathlib import Path

from rarecast.errors import InputError


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping, read with ``yaml.safe_load``; errors give the file and line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(f"bad YAML: {getattr(exc, 'problem', None) or exc}", file=str(path), row=row) from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a YAML mapping", file=str(path))
    return data
