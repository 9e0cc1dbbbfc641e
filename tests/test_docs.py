"""Run the code of the documentation (docs/*.md) as written.

Each page's ```python blocks run in order in one namespace per page (a block
may use what an earlier block of the same page defined). A block preceded by
the line ``<!-- docs-test: skip -->`` is not run (it needs something this
project does not have yet, and the page says so). A page whose code uses a
backend that is not installed is skipped with the reason; a page may also
declare what it needs with ``<!-- docs-test: requires torch, jax -->``.

Every page runs in a fresh working directory (files the examples write land
there) and with the plugin state it found: in-process plugins a page registers
and plugins it disables are undone afterwards, so pages do not leak into each
other or into the rest of the test session.
"""

from __future__ import annotations

import re
import textwrap
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

SKIP_MARKER = "<!-- docs-test: skip -->"
REQUIRES = re.compile(r"<!--\s*docs-test:\s*requires\s+([\w\s,-]+?)\s*-->")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)[^`]*$")

#: what in a page's code means it needs a backend (registry name)
BACKEND_USES = {
    "torch": re.compile(r"ml\.TorchBackend\b|ml\.backend\(\s*[\"']torch[\"']|^\s*(import|from)\s+torch\b", re.M),
    "jax": re.compile(r"ml\.JaxBackend\b|ml\.backend\(\s*[\"']jax[\"']|^\s*(import|from)\s+jax\b", re.M),
    "numpy": re.compile(r"ml\.NumpyBackend\b|ml\.backend\(\s*[\"']numpy[\"']|\bmithril_numpy\b", re.M),
    "ggml": re.compile(r"ml\.GGMLBackend\b|ml\.backend\(\s*[\"']ggml[\"']|\bmithril_ggml\b", re.M),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    index: int  # position among the page's python blocks, from 0
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: bool


def parse_blocks(text: str) -> list[Block]:
    """Fenced code blocks (top level or indented up to 3 spaces), python ones numbered in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    n_python = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group("fence"), m.group("info").lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # closing fence
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        is_python = lang in ("python", "py", "python3")
        blocks.append(Block(n_python if is_python else -1, start + 1, lang,
                            textwrap.dedent("\n".join(body)) + "\n", prev == SKIP_MARKER))
        n_python += is_python
    return blocks


def python_blocks(text: str) -> list[Block]:
    return [b for b in parse_blocks(text) if b.index >= 0]


def required_backends(text: str) -> set[str]:
    """Backends the page's executed code uses, plus those declared with a requires marker."""
    code = "\n".join(b.code for b in python_blocks(text) if not b.skip)
    needed = {name for name, pattern in BACKEND_USES.items() if pattern.search(code)}
    for m in REQUIRES.finditer(text):
        needed |= {n.strip() for n in m.group(1).split(",") if n.strip()}
    return needed


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) if DOCS.is_dir() else []


# ------------------------------------------------------------ plugin isolation
@pytest.fixture
def isolated_plugins() -> Iterator[None]:
    """Undo what a page does to the plugin registry (in-process plugins, disabled plugins)."""
    from mithril.plugins import manager as manager_module
    from mithril.primitives.base import registry

    manager_module.plugin_manager().load_entry_points()
    saved_manager = manager_module._manager
    saved_table, saved_origin = dict(registry._table), dict(registry._origin)
    manager_module._manager = None  # the page gets a fresh manager (entry points reloaded)
    try:
        yield
    finally:
        page_manager = manager_module._manager
        if page_manager is not None:
            for name, info in list(page_manager.infos.items()):
                if info.source == "in-process":
                    page_manager.unregister(name)
        manager_module._manager = saved_manager
        registry._table.clear()
        registry._table.update(saved_table)
        registry._origin.clear()
        registry._origin.update(saved_origin)


# ------------------------------------------------------------------- the tests
def run_page(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for block in python_blocks(text):
        if block.skip:
            continue
        where = f"{path.name}, python block {block.index} (line {block.line})"
        try:
            code = compile(block.code, f"<{where}>", "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own examples
        except Exception:  # noqa: BLE001 - re-raised with the page and block named
            numbered = "\n".join(f"{k + 1:4d}  {line}" for k, line in enumerate(block.code.splitlines()))
            pytest.fail(f"{where} failed:\n{numbered}\n\n{traceback.format_exc()}", pytrace=False)


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        isolated_plugins: None) -> None:
    import mithril as ml

    text = page.read_text(encoding="utf-8")
    missing = sorted(required_backends(text) - set(ml.plugins.backends()))
    if missing:
        pytest.skip(f"{page.name} needs backend(s) not installed: {', '.join(missing)}")
    monkeypatch.chdir(tmp_path)
    run_page(page)


# ------------------------------------------------------ structure of the site
def nav_pages() -> list[str]:
    if not MKDOCS_YML.exists():
        return []
    return re.findall(r":\s*([\w./-]+\.md)\s*$", MKDOCS_YML.read_text(encoding="utf-8"), re.M)


@pytest.mark.skipif(not DOCS.is_dir(), reason="no docs/ folder")
def test_nav_lists_every_page() -> None:
    on_disk = {p.name for p in doc_pages()}
    in_nav = nav_pages()
    assert sorted(set(in_nav)) == sorted(in_nav), f"a page is listed twice in mkdocs.yml: {in_nav}"
    assert set(in_nav) == on_disk, (
        f"not in the mkdocs.yml nav: {sorted(on_disk - set(in_nav))}; "
        f"in the nav but missing: {sorted(set(in_nav) - on_disk)}"
    )


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_links_between_pages_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    code = {b.line for b in parse_blocks(text)}
    bad = []
    for target in re.findall(r"\]\(([^)\s]+?\.md)(?:#[\w-]*)?\)", text):
        if "://" in target:
            continue
        if not (page.parent / target).resolve().is_file():
            bad.append(target)
    assert not bad, f"{page.name} links to missing page(s) {bad}" + (" (in code?)" if code else "")


def test_parser_honours_skip_marker() -> None:
    text = (
        "text\n\n```python\nx = 1\n```\n\n" + SKIP_MARKER + "\n```python\nraise SystemExit\n```\n"
        "\n```bash\nrm -rf /\n```\n\n```python\ny = x + 1\n```\n"
    )
    blocks = python_blocks(text)
    assert [(b.index, b.skip) for b in blocks] == [(0, False), (1, True), (2, False)]
    assert blocks[2].code == "y = x + 1\n"
    assert required_backends("```python\nb = ml.TorchBackend()\n```\n") == {"torch"}
    assert required_backends(SKIP_MARKER + "\n```python\nb = ml.GGMLBackend()\n```\n") == set()
    assert required_backends("<!-- docs-test: requires jax, torch -->\n") == {"jax", "torch"}
