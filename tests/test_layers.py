"""The layers of docs/layers.md hold: `lint-imports` (import-linter, configured in pyproject.toml)
passes, so a wrong-way import fails the suite as it fails `make lint`; and every commands/ module
says its layer where a reader meets it first, and is on the map."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("Lease life", "Reads", "Intake", "People", "Books", "Kernel", "Rules", "Vocabulary")
MODULES = sorted(p for p in (ROOT / "commands").glob("*.py") if p.stem != "__init__")


def test_every_import_contract_is_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_commands_module_names_its_layer_and_is_on_the_map():
    layers_page = (ROOT / "docs" / "layers.md").read_text()
    unnamed = [
        p.name
        for p in MODULES
        if not (ast.get_docstring(ast.parse(p.read_text())) or "").startswith(
            tuple(f"{layer}: " for layer in LAYERS)
        )
    ]
    unmapped = [p.name for p in MODULES if f"- `{p.stem}`: " not in layers_page]
    assert unnamed == [], "a docstring's first line should open with its layer, as 'Kernel: '"
    assert unmapped == [], "docs/layers.md should have a line for each module"
