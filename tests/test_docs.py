"""The docs say what the code does: every `LABBOT_*` variable the code reads is documented in
docs/, every one documented there is read, and every relative link in the README and docs/
leads to a file (and heading) that exists.

Variables are found by reading the source, not by importing it: an environment variable's name
is a string constant that is exactly `LABBOT_...`. The product's (bot/, commands/, storage/,
metal/) belong in the operator's pages; the test harness's (the helper modules in tests/, such
as `LABBOT_REQUIRE_POSTGRES`) belong in docs/testing.md. Every other variable bot/settings.py
reads (`DATABASE_URL`, `SLACK_BOT_TOKEN`, ...) must be documented too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PRODUCT = ("bot", "commands", "storage", "metal")
LABBOT = re.compile(r"LABBOT_[A-Z0-9_]+(?![A-Z0-9_*])")  # `LABBOT_EC2_*` names a family
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PORT")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _constants(path: Path, name: re.Pattern[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and name.fullmatch(node.value)
    }


def _read_by(paths: list[Path]) -> set[str]:
    return set().union(*(_constants(path, LABBOT) for path in paths))


def _product_modules() -> list[Path]:
    return [path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))]


def _harness_modules() -> list[Path]:
    """The tests' own plumbing (conftest, the PostgreSQL starter, the browser), not the tests."""
    return [
        path for path in sorted((ROOT / "tests").rglob("*.py")) if not path.name.startswith("test_")
    ]


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _documented(pages: list[Path]) -> set[str]:
    return set().union(*(LABBOT.findall(page.read_text()) for page in pages))


def test_every_labbot_variable_the_product_reads_is_documented() -> None:
    missing = _read_by(_product_modules()) - _documented(_pages())
    assert not missing, f"read by the code but not documented in docs/: {sorted(missing)}"


def test_every_variable_the_settings_read_is_documented() -> None:
    read = _constants(ROOT / "bot" / "settings.py", ENV_NAME)
    text = "\n".join(page.read_text() for page in _pages())
    missing = {name for name in read if not re.search(rf"\b{name}\b", text)}
    assert not missing, f"bot/settings.py reads these, docs/ never names them: {sorted(missing)}"


def test_the_test_harness_variables_are_documented_in_testing_md() -> None:
    missing = _read_by(_harness_modules()) - _read_by(_product_modules())
    missing -= _documented([DOCS / "testing.md"])
    assert not missing, f"read by the tests' plumbing, not in docs/testing.md: {sorted(missing)}"


def test_every_documented_labbot_variable_is_read() -> None:
    read = _read_by(_product_modules()) | _read_by(_harness_modules())
    unread = _documented([*_pages(), ROOT / "README.md"]) - read
    assert not unread, f"documented, but nothing reads them: {sorted(unread)}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    return broken


def test_every_relative_link_leads_somewhere() -> None:
    broken = {
        str(page.relative_to(ROOT)): links
        for page in [ROOT / "README.md", *_pages()]
        if (links := _broken_links(page))
    }
    assert not broken, f"links to nothing: {broken}"


def test_the_readme_opens_with_the_two_commands() -> None:
    """CI (.ci/run) and newcomers start from the README's first code block."""
    first_block = FENCE.search((ROOT / "README.md").read_text())
    assert first_block is not None
    lines = first_block.group().splitlines()
    assert lines[1].startswith("make run") and lines[2].startswith("make test")
