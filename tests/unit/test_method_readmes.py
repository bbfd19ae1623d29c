"""Every method package's README maps its paper to code that exists.

For each ``osad_lib/methods/<package>/`` with a ``README.md`` (so a README added later is checked
too):

* it has an equations table with the header ``| paper | what | function |`` and at least three
  rows, each naming at least one function;
* every backticked ``osad_lib....`` name in the ``function`` column resolves: the longest prefix
  that imports as a module, then ``getattr`` for the rest (classes, methods and constants allowed);
* every ``docs/...md`` path the README cites exists, and so does every section title quoted in
  parentheses right after it, even when a line break splits a title (``tests/unit/test_docs.py``
  checks the same citations line by line, with the rest of the library).

The packages of the five methods this project documents must have one.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS = ROOT / "osad_lib" / "methods"
#: Packages whose README must exist (ahl's is checked as soon as it has one).
REQUIRED = ("devnet", "dra", "bgad", "anoonly", "baselines")
HEADER = ("paper", "what", "function")
MIN_ROWS = 3
#: A fully qualified name in backticks: module path and attribute chain.
QUALIFIED = re.compile(r"`(osad_lib(?:\.[A-Za-z_]\w*)+)`")
DOC_PATH = re.compile(r"docs/[\w/-]+\.md")
#: A cited page with the section titles quoted right after it: the path, then ("A", "B" and "C").
DOC_CITATION = re.compile(r'(docs/[\w/-]+\.md)`?\s*\(?((?:"[^"]+"(?:\s*(?:,|;|and)\s*(?="))?)+)')


def method_packages() -> list[Path]:
    return sorted(p for p in METHODS.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def readmes() -> list[Path]:
    return [p / "README.md" for p in method_packages() if (p / "README.md").is_file()]


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` inside a cell is not a separator)."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def equation_rows(text: str) -> list[list[str]] | None:
    """The body rows of the first table whose header is ``| paper | what | function |``, or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("|") and tuple(c.lower() for c in split_row(line)) == HEADER:
            rows = []
            for row in lines[i + 2:]:  # after the header and its separator line
                if not row.lstrip().startswith("|"):
                    break
                rows.append(split_row(row))
            return rows
    return None


def unresolved(name: str) -> str | None:
    """Why ``name`` does not resolve (None when it does): import its longest module prefix,
    then look up the remaining attributes one by one."""
    parts = name.split(".")
    module, depth = None, 0
    for depth in range(len(parts), 0, -1):
        candidate = ".".join(parts[:depth])
        try:
            module = importlib.import_module(candidate)
            break
        except ModuleNotFoundError as error:
            # only "this prefix is no module" moves on to a shorter one; a module that exists but
            # fails to import its own dependencies is a real error
            if error.name is None or not (candidate == error.name or candidate.startswith(error.name + ".")):
                raise
    if module is None:
        return f"no importable module in {name}"
    obj = module
    for i, attribute in enumerate(parts[depth:], start=depth):
        if not hasattr(obj, attribute):
            return f"{'.'.join(parts[:i])} has no attribute {attribute!r}"
        obj = getattr(obj, attribute)
    return None


def headings(page: Path) -> set[str]:
    """The titles of a Markdown page's ``#`` headings (outside fenced code blocks)."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6}[ \t]+(.+?)[ \t]*$", line)):
            found.add(match.group(1))
    return found


def cited_sections(text: str) -> list[tuple[str, str]]:
    """``(page, title)`` for every section title quoted after a ``docs/...md`` path; a title
    wrapped over two lines counts as one (line breaks read as spaces)."""
    flat = re.sub(r"\s+", " ", text)
    return [(m.group(1), title) for m in DOC_CITATION.finditer(flat) for title in re.findall(r'"([^"]+)"', m.group(2))]


def function_names(rows: list[list[str]]) -> list[tuple[int, list[str]]]:
    """Per row (numbered from 1), the backticked ``osad_lib`` names of its function cell."""
    column = HEADER.index("function")
    return [(n, QUALIFIED.findall(row[column]) if len(row) > column else []) for n, row in enumerate(rows, start=1)]


def test_the_documented_method_packages_have_a_readme():
    missing = [name for name in REQUIRED if not (METHODS / name / "README.md").is_file()]
    assert not missing, f"method packages without README.md: {missing}"


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.parent.name)
def test_equations_table(readme):
    rows = equation_rows(readme.read_text(encoding="utf-8"))
    where = readme.relative_to(ROOT)
    assert rows is not None, f"{where}: no table with the header | paper | what | function |"
    assert len(rows) >= MIN_ROWS, f"{where}: the equations table has {len(rows)} rows, at least {MIN_ROWS} expected"
    bad = [n for n, row in enumerate(rows, start=1) if len(row) != len(HEADER)]
    assert not bad, f"{where}: rows {bad} of the equations table do not have 3 cells (an unescaped '|'?)"
    empty = [n for n, names in function_names(rows) if not names]
    assert not empty, f"{where}: rows {empty} of the equations table name no `osad_lib.…` function"


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.parent.name)
def test_every_named_function_exists(readme):
    rows = equation_rows(readme.read_text(encoding="utf-8")) or []
    problems = [f"{readme.relative_to(ROOT)}: `{name}`: {why}"
                for _, names in function_names(rows) for name in names if (why := unresolved(name))]
    assert not problems, "names in the function column that do not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: p.parent.name)
def test_every_cited_docs_page_exists(readme):
    cited = sorted(set(DOC_PATH.findall(readme.read_text(encoding="utf-8"))))
    missing = [path for path in cited if not (ROOT / path).is_file()]
    assert not missing, f"{readme.relative_to(ROOT)} cites pages that do not exist: {missing}"
    wrong = [f'{page}: no heading "{title}"' for page, title in cited_sections(readme.read_text(encoding="utf-8"))
             if title not in headings(ROOT / page)]
    assert not wrong, f"{readme.relative_to(ROOT)} cites sections that do not exist:\n" + "\n".join(wrong)


def test_the_checks_catch_what_they_should():
    """A missing attribute or module is reported, an escaped pipe stays in its cell, a wrapped title is read whole."""
    assert unresolved("osad_lib.losses.deviation.deviation_loss") is None
    assert unresolved("osad_lib.methods.dra.networks.DRA.forward") is None
    assert "no attribute 'deviation_los'" in unresolved("osad_lib.losses.deviation.deviation_los")
    assert "no attribute 'nowhere'" in unresolved("osad_lib.methods.nowhere.model.Thing")
    assert "no attribute 'missing'" in unresolved("osad_lib.methods.dra.networks.DRA.missing")
    table = "| paper | what | function |\n|---|---|---|\n| Eq. 1 | a \\| b | `osad_lib.x.y` |\n| Eq. 2 | c | d |\n\nafter"
    rows = equation_rows(table)
    assert rows == [["Eq. 1", "a \\| b", "`osad_lib.x.y`"], ["Eq. 2", "c", "d"]]
    assert function_names(rows) == [(1, ["osad_lib.x.y"]), (2, [])]
    assert equation_rows("| paper | what | code |\n|---|---|---|\n| a | b | c |") is None
    page = "docs" + "/official_code/dra.md"  # split so that tests/unit/test_docs.py does not read a citation here
    wrapped = f'see `{page}` ("Where the code departs\nfrom the paper" and\n"Model"; items 1-2)'
    assert cited_sections(wrapped) == [(page, "Where the code departs from the paper"), (page, "Model")]
