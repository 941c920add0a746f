"""The docs cannot drift: the CLI reference in docs/cli.md is what scripts/cli_reference.py generates from the
typer app, and every relative link in README.md and docs/*.md reaches a file inside the repository."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), with an optional "title"; and reference definitions `[label]: target`
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def test_cli_reference_matches_the_app():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert module.updated(text) == text, "docs/cli.md is stale: run `python scripts/cli_reference.py`"


def relative_links(page: Path) -> list[str]:
    """Relative link targets of a Markdown page, outside fenced code blocks, without #fragments."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_reach_files_in_the_repository(page):
    broken = []
    for target in relative_links(page):
        path = (page.parent / target).resolve()
        if not path.exists() or not path.is_relative_to(ROOT):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing or outside files: {broken}"
