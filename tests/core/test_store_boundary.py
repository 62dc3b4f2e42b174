"""One storage package owns every SQL statement: outside `core/store/` no module calls
`execute`, `executemany` or `executescript`, and no string holds an SQL statement."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import imagehash_app

PACKAGE = Path(imagehash_app.__file__).parent
STORE = PACKAGE / "core" / "store"
EXECUTE = re.compile(r"\bexecute(many|script)?\(")
# A string that starts like a statement (prose in docstrings starts otherwise).
STATEMENT = re.compile(
    r"^[\s\"'(]*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|DROP|ALTER|BEGIN|COMMIT|ROLLBACK)\s"
)


def _modules_outside_the_store() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if STORE not in p.parents]


def _strings(source: str) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(t.start[0], t.string) for t in tokens if t.type == tokenize.STRING]


def test_no_execute_outside_the_store() -> None:
    found = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in _modules_outside_the_store()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if EXECUTE.search(line)
    ]
    assert found == []


def test_no_sql_text_outside_the_store() -> None:
    found = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in _modules_outside_the_store()
        for n, text in _strings(p.read_text(encoding="utf-8"))
        if STATEMENT.search(text.lstrip("rbfuRBFU"))
    ]
    assert found == []


def test_the_checks_see_sql_where_it_is() -> None:
    """The store itself is full of both: the patterns are not blind."""
    source = (STORE / "images.py").read_text(encoding="utf-8")
    assert EXECUTE.search(source)
    assert any(STATEMENT.search(t.lstrip("rbfuRBFU")) for _, t in _strings(source))
