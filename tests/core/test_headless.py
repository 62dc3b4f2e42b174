"""The engine is headless: no core module imports PySide6 (the CLI and servers run without Qt)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "imagehash_app" / "core"

IMPORT_ALL = """
import importlib, pkgutil, sys
import imagehash_app.core.settings
import imagehash_app.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "imagehash_app.core.")]
for name in names:
    importlib.import_module(name)
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "shiboken6"))
print(len(names), qt)
"""


def test_importing_every_core_module_loads_no_qt() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=240, check=True
    ).stdout.split(maxsplit=1)
    assert int(out[0]) >= 10  # every module was really imported
    assert out[1].strip() == "[]"


def test_no_core_source_mentions_qt() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(PySide6|PyQt5|PyQt6|shiboken6)\b", re.MULTILINE)
    offenders = [p for p in CORE.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_command_line_loads_no_qt() -> None:
    """`imagehash-app index/search/status` must run where Qt is missing (servers, CI)."""
    code = "import sys, imagehash_app.cli; print(sorted(m for m in sys.modules if m.startswith('PySide6')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    ).stdout
    assert out.strip() == "[]"


def test_decode_workers_and_the_command_line_start_without_torch() -> None:
    """A spawned decode process imports the entry point's module and the decoding modules; with
    PyTorch among them each of 16 workers would spend seconds starting (core/embedding.py)."""
    code = (
        "import sys, imagehash_app.cli, imagehash_app.core.embedding; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    ).stdout
    assert out.strip() == "[]"
