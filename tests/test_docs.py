"""The user-facing docs hold together: every relative link resolves, the README stays a short guide, and no doc
points at folders that only exist on the developers' machines.

Links are read from the Markdown text outside code blocks and inline code. A ``#anchor`` must name a heading of
the target file (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for repeats)
or an explicit ``<a id="...">``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300
# The user-facing docs: what a user reads after cloning or installing.
DOCS = sorted([README, ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "results").rglob("*.md")])
# Files scanned for paths that are not on a user's machine: the docs and the result tables.
PUBLISHED = sorted([*DOCS, *(ROOT / "results").rglob("*.csv")])
# A run folder at the top of the tree (`runs/x`), not a package such as contrique_video/runs/; the shared data
# folder beside the developers' checkouts.
PRIVATE_PATHS = re.compile(r"(?<![\w./-])runs/|\.\./shared\b")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where link syntax means nothing."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML such as <a id=...></a>
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text stays, its target goes
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w is Unicode-aware, as GitHub keeps letters in any script
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_docs_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "CHANGELOG.md", "docs/index.md", "results/README.md"} <= names


@pytest.mark.parametrize("heading, expected", [
    ("VMAF beside the score (`--reference`)", "vmaf-beside-the-score---reference"),
    ("Logs like libvmaf's", "logs-like-libvmafs"),
    ("Heads on your own scores: `fit`, `evaluate`", "heads-on-your-own-scores-fit-evaluate"),
    ("Model card: builtin-v4 (the built-in model)", "model-card-builtin-v4-the-built-in-model"),
    ("`score_many` and Dask", "score_many-and-dask"),
])
def test_slugs_follow_github(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A\n\n## Usage\n\n```\n# not a heading\n```\n\n## Usage\n\n<a id=\"here\"></a>\n")
    assert anchors(page) == {"a", "usage", "usage-1", "here"}


def test_links_skip_code_and_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](a.md) `[b](b.md)` [c](https://example.com)\n\n```\n[d](d.md)\n```\n[e](#x)\n")
    assert relative_links(page) == ["a.md", "#x"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_a_short_guide():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


@pytest.mark.parametrize("doc", PUBLISHED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_private_paths(doc: Path):
    hits = [f"line {n}: {line.strip()[:80]}" for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
            if PRIVATE_PATHS.search(line)]
    assert not hits, f"{doc.relative_to(ROOT)} names runs/ or ../shared/ (not on a user's machine): " + "; ".join(hits)


def test_private_path_pattern():
    assert PRIVATE_PATHS.search("python x.py --out runs/v1")
    assert PRIVATE_PATHS.search("--clive ../shared/data/clive-train")
    assert not PRIVATE_PATHS.search("contrique_video/runs/records.py and tests/runs/test_distributed.py")
