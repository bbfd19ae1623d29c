"""The reference notes the code cites live in the repository's ``docs/`` and stay in step with it.

* No file of the library, notebooks, tests, README, runner or Makefile refers to the reference
  files that existed only on the development machine (a clone has none of them).
* Every ``docs/<...>.md`` path those files mention exists.
* Where a reference names a section right after the path, ``docs/x.md`` "Heading" or (in notebook
  markdown) `docs/x.md` ("Heading"), or several (``"A", "B" and "C"``), each is a heading of that
  file. Renaming a heading without updating its citations fails here.
* The same holds for the cross-references between the docs themselves (paths relative to the
  citing page, e.g. `shared.md` ("Deviation loss")).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: What the tests scan: the files a user's clone relies on.
SCANNED = ("osad_lib", "notebooks", "tests", "README.md", "run_all.py", "Makefile")
#: Names of reference files that were never part of the repository.
FORBIDDEN = re.compile(r"official_code_facts|datasets_and_weights|(?<![\w/])conventions\.md|conventions §")
#: A bare section number of the old reference notes, whose sections are now headings of docs/:
#: "code §2.6", "the code's rate, §4.5", "datasets §3", "§10 item 2", and numbers that no
#: paper's body has (§1.x, §2.x, §3.5+, §5.3+, DevNet §3.4, AHL §4.6, BGAD §5, AnoOnly §6).
#: The papers' own sections ("DevNet §6.3", "DRA §4.1", "BGAD §3.4", …) do not match.
OLD_NOTES_SECTION = re.compile(
    r"\bcode,? §\s?\d|\bCode \(§|\bcode's [^§\n]{0,40}?[(,] ?§\s?\d"
    r"|\bdatasets §"
    r"|§\s?(?:[7-9]|1[01])\b(?!\.)"
    r"|§\s?[12]\.\d|§\s?3\.[5-9]|§\s?5\.[3-9]"
    r"|DevNet\W{0,3}§\s?3\.[4-9]|AHL\W{0,3}§\s?4\.[6-9]|BGAD\W{0,3}§\s?5|AnoOnly[^§\n]{0,30}§\s?6"
)
#: A path into docs/ as the code writes it (from the repository root).
DOC_PATH = re.compile(r"docs/[\w/-]+\.md")
#: A page named in backticks inside docs/ (relative to the citing page, or from the root).
DOC_LINK = re.compile(r"`([\w/-]+\.md)`")
HEADING_LINE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*$")
QUOTED = re.compile(r'"([^"\n]+)"')
SEPARATOR = re.compile(r"[\s#]*(?:,|;|and)[\s#]*(?=\")")
BINARY_SUFFIXES = {".npz", ".npy", ".png", ".jpg", ".jpeg", ".bmp", ".pdf", ".pt", ".pth", ".pkl", ".gz", ".zip"}


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*"))
                         if p.is_file() and "__pycache__" not in p.parts and p.suffix.lower() not in BINARY_SUFFIXES)
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def text_of(path: Path) -> str:
    """A file's text; a notebook's is its cells' sources (the JSON escapes undone)."""
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return ""
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        return "\n\n".join("".join(cell["source"]) for cell in cells)
    return text


def headings(page: Path) -> set[str]:
    """The titles of a Markdown page's ``#`` headings (outside fenced code blocks)."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = HEADING_LINE.match(line)
        if match and not fenced:
            found.add(match.group(1))
    return found


def cited_headings(text: str, end: int) -> list[str]:
    """The quoted section titles right after a path ending at ``end``: closing backticks,
    whitespace (and a comment's ``#``), an optional "(", then "A", "B" and "C"."""
    pos = end
    while pos < len(text) and text[pos] == "`":
        pos += 1
    pos = re.compile(r"[\s#]*\(?").match(text, pos).end()
    titles = []
    while (quoted := QUOTED.match(text, pos)) is not None:
        titles.append(quoted.group(1))
        pos = quoted.end()
        separator = SEPARATOR.match(text, pos)
        if separator is None:
            break
        pos = separator.end()
    return titles


def references(text: str) -> list[tuple[str, list[str]]]:
    """``(path from the root, [cited headings])`` for every ``docs/...md`` path in ``text``."""
    return [(m.group(0), cited_headings(text, m.end())) for m in DOC_PATH.finditer(text)]


def docs_links(page: Path) -> list[tuple[Path, list[str]]]:
    """``(resolved page, [cited headings])`` for every backticked ``.md`` name in a docs page."""
    text = page.read_text(encoding="utf-8")
    links = []
    for match in DOC_LINK.finditer(text):
        name = match.group(1)
        target = ROOT / name if name.startswith("docs/") else (page.parent / name).resolve()
        links.append((target, cited_headings(text, match.end())))
    return links


def missing_headings(refs: list[tuple[str, list[str]]]) -> list[str]:
    problems = []
    for path, titles in refs:
        page = ROOT / path
        if not page.is_file():
            problems.append(f"{path}: no such file")
            continue
        known = headings(page)
        problems.extend(f'{path}: no heading "{title}"' for title in titles if title not in known)
    return problems


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): text_of(path) for path in scanned_files()}


def test_the_scan_covers_code_notebooks_and_tests(texts):
    assert "osad_lib/training.py" in texts and "notebooks/02_dra.ipynb" in texts and "README.md" in texts
    assert "tests/unit/test_docs.py" not in texts
    assert "Where the code departs from the paper" in texts["notebooks/02_dra.ipynb"]


def test_no_reference_to_files_outside_the_repository(texts):
    offenders = [f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}"
                 for name, text in texts.items() for m in FORBIDDEN.finditer(text)]
    assert not offenders, "references to files that are not in the repository:\n" + "\n".join(offenders)


def test_library_cites_headings_not_bare_sections_of_the_old_notes(texts):
    """The library names a docs/ page and heading; a bare "(code §2.6)" of the old notes points nowhere."""
    library = {name: text for name, text in texts.items() if name.startswith("osad_lib/")}
    assert len(library) > 50
    offenders = [f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)!r}"
                 for name, text in library.items() for m in OLD_NOTES_SECTION.finditer(text)]
    assert not offenders, ("sections of the old reference notes; cite ``docs/<page>.md`` \"Heading\" instead:\n"
                           + "\n".join(offenders))
    for old in ("(code §2.6)", "(code, §10 AHL 4)", "§10 items 1 and 4", "(datasets §3)", "(§1.4, §2.5)",
                "the code's rate, §4.5", "Code (§4.3, §4.7)", "(DevNet §3.4 Eq. (5))", "AHL's \"CutMix\" (AHL §4.6)",
                "(BGAD, §5.8)", "(AnoOnly's ``aucpr_normal``, §6.4)", "(§5.5)"):
        assert OLD_NOTES_SECTION.search(old), old
    papers = ("DevNet §6.3", "DRA §4.1, App. B.2", "AHL §4.5.1", "(§3.2, App. B.1)", "BGAD §3.4", "AnoOnly §4.6",
              "Ruff et al. §3.3", "Paper vs code: §6.3 of the paper", "(paper §4.1)", "protocols §6.5.1/§6.6.1")
    assert not [p for p in papers if OLD_NOTES_SECTION.search(p)]


def test_every_cited_docs_page_exists(texts):
    cited = {path for text in texts.values() for path, _ in references(text)}
    assert {"docs/official_code/shared.md", "docs/datasets.md", "docs/conventions.md",
            "docs/official_code/dra.md", "docs/official_code/devnet.md", "docs/official_code/ahl.md",
            "docs/official_code/bgad.md"} <= cited
    missing = sorted(path for path in cited if not (ROOT / path).is_file())
    assert not missing, f"cited but not in the repository: {missing}"


def test_every_cited_heading_exists(texts):
    problems, n_titles = [], 0
    for name, text in texts.items():
        refs = references(text)
        n_titles += sum(len(titles) for _, titles in refs)
        problems.extend(f"{name}: {problem}" for problem in missing_headings(refs))
    assert not problems, "citations of missing sections:\n" + "\n".join(problems)
    assert n_titles >= 60, f"only {n_titles} section citations found: has the citation style changed?"


def test_cross_references_between_docs_pages():
    pages = sorted(DOCS.rglob("*.md"))
    assert len(pages) >= 8
    problems, n_titles = [], 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"official_code_facts|datasets_and_weights|conventions §", text), page
        for target, titles in docs_links(page):
            n_titles += len(titles)
            if not target.is_file():
                problems.append(f"{page.relative_to(ROOT)}: {target} does not exist")
                continue
            known = headings(target)
            problems.extend(f'{page.relative_to(ROOT)}: {target.name} has no heading "{t}"'
                            for t in titles if t not in known)
    assert not problems, "\n".join(problems)
    assert n_titles >= 5


def test_the_parser_reads_each_citation_style():
    """Docstring, comment, notebook and list styles, and a renamed heading is caught."""
    docstring = 'skeleton (``docs/official_code/shared.md``\n"Training loop skeleton", "Balanced batch sampler"): an'
    assert references(docstring) == [("docs/official_code/shared.md", ["Training loop skeleton", "Balanced batch sampler"])]
    comment = '# Converters (docs/datasets.md\n# "Quirks of the real files")'
    assert references(comment) == [("docs/datasets.md", ["Quirks of the real files"])]
    notebook = 'defaults (`docs/official_code/devnet.md` ("Entry points and defaults of the code")). The'
    assert references(notebook) == [("docs/official_code/devnet.md", ["Entry points and defaults of the code"])]
    listed = '``docs/official_code/dra.md`` "Model", "Training pipeline", "Evaluation" and\n"Data protocol" (items'
    assert references(listed)[0][1] == ["Model", "Training pipeline", "Evaluation", "Data protocol"]
    assert references('``docs/official_code/dra.md`` "Model"; paper §3.2 "Training and Inference"')[0][1] == ["Model"]
    assert not missing_headings(references(listed))
    renamed = '``docs/official_code/dra.md`` "Data protocols"'
    assert missing_headings(references(renamed)) == ['docs/official_code/dra.md: no heading "Data protocols"']
    assert missing_headings([("docs/nowhere.md", [])]) == ["docs/nowhere.md: no such file"]
    assert FORBIDDEN.search("see conventions §2.1") and FORBIDDEN.search("(``conventions.md`` §2.5)")
    assert not FORBIDDEN.search('(``docs/conventions.md`` "Figures")')


def test_the_citing_modules_name_the_sections_they_rely_on(texts):
    """A few citations pinned by hand, so that the parser cannot silently stop finding them."""
    expected = {
        "osad_lib/training.py": ("docs/official_code/shared.md", ["Training loop skeleton", "Balanced batch sampler"]),
        "osad_lib/data/protocols.py": ("docs/official_code/dra.md", ["Data protocol"]),
        "osad_lib/metrics.py": ("docs/official_code/shared.md", ["Evaluation code"]),
        "osad_lib/seeding.py": ("docs/conventions.md", ["Reproducibility"]),
        "osad_lib/data/images.py": ("docs/datasets.md", ["Quirks of the real files"]),
        "notebooks/02_dra.ipynb": ("docs/official_code/dra.md", ["Where the code departs from the paper"]),
    }
    for name, ref in expected.items():
        assert ref in references(texts[name]), name
