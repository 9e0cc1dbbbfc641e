"""Run the code of the documentation (docs/*.md) as written.

Each page's ```python blocks run in order in one namespace per page (a block
may use what an earlier block of the same page defined). Markers on the lines
right before a block's opening fence:

* ``<!-- docs-test: skip -->``: the block is not run (it needs something this
  project does not have yet, and the page says so);
* ``<!-- docs-test: requires ggml -->`` (names separated by commas): the block
  runs only when these backends are installed; a name that is not a backend
  (``requires transformers``) is a Python module that must be importable.

A page whose other blocks use a backend that is not installed (``ml.TorchBackend``,
``import jax``, ``ml.backend("numpy")``...) is skipped with the reason.

Every page runs in a fresh working directory (files the examples write land
there) and with the plugin state it found: in-process plugins a page registers
and plugins it disables are undone afterwards, so pages do not leak into each
other or into the rest of the test session.
"""

from __future__ import annotations

import re
import textwrap
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

SKIP_MARKER = "<!-- docs-test: skip -->"
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<what>skip|requires\s+(?P<names>[\w\s,-]+?))\s*-->$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)[^`]*$")

#: what in a page's code means it needs a backend (registry name); imports count at top level only
#: (a plugin importing torch inside its torch branch does not need torch)
BACKEND_USES = {
    "torch": re.compile(r"ml\.TorchBackend\b|ml\.backend\(\s*[\"']torch[\"']|^(import|from)\s+torch\b", re.M),
    "jax": re.compile(r"ml\.JaxBackend\b|ml\.backend\(\s*[\"']jax[\"']|^(import|from)\s+jax\b", re.M),
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
    requires: frozenset[str] = frozenset()


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
        skip, requires = False, set()
        j = start - 1
        while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j].strip())):
            marker = MARKER.match(lines[j].strip())
            if marker and marker.group("what") == "skip":
                skip = True
            elif marker:
                requires |= {n.strip() for n in marker.group("names").split(",") if n.strip()}
            j -= 1
        is_python = lang in ("python", "py", "python3")
        blocks.append(
            Block(
                n_python if is_python else -1,
                start + 1,
                lang,
                textwrap.dedent("\n".join(body)) + "\n",
                skip,
                frozenset(requires),
            )
        )
        n_python += is_python
    return blocks


def python_blocks(text: str) -> list[Block]:
    return [b for b in parse_blocks(text) if b.index >= 0]


def required_backends(text: str) -> set[str]:
    """Backends used by the page's blocks that run unconditionally (no skip or requires marker)."""
    code = "\n".join(b.code for b in python_blocks(text) if not b.skip and not b.requires)
    return {name for name, pattern in BACKEND_USES.items() if pattern.search(code)}


def importable_requirements(text: str) -> set[str]:
    """Names in the page's requires markers that are not backends and can be imported as modules."""
    import importlib.util

    names = {n for b in python_blocks(text) for n in b.requires if n not in BACKEND_USES}
    return {n for n in names if importlib.util.find_spec(n) is not None}


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
        # primitives the core registered while the page ran (a module first imported by it, e.g. the
        # optimizers' fused update) stay: their module is imported now and will not register them again
        for prim_name, origin in registry._origin.items():
            if prim_name not in saved_table and (origin == "mithril" or origin.startswith("mithril.")):
                saved_table[prim_name], saved_origin[prim_name] = registry._table[prim_name], origin
        registry._table.clear()
        registry._table.update(saved_table)
        registry._origin.clear()
        registry._origin.update(saved_origin)


# ------------------------------------------------------------------- the tests
def run_page(path: Path, installed: set[str]) -> list[str]:
    """Run the page's blocks; returns why blocks were left out (requires markers not met)."""
    text = path.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    left_out = []
    for block in python_blocks(text):
        if block.skip:
            continue
        if not block.requires <= installed:
            left_out.append(f"block {block.index} needs {', '.join(sorted(block.requires - installed))}")
            continue
        where = f"{path.name}, python block {block.index} (line {block.line})"
        try:
            code = compile(block.code, f"<{where}>", "exec")
            exec(code, namespace)
        except Exception:
            numbered = "\n".join(f"{k + 1:4d}  {line}" for k, line in enumerate(block.code.splitlines()))
            pytest.fail(f"{where} failed:\n{numbered}\n\n{traceback.format_exc()}", pytrace=False)
    return left_out


@pytest.mark.filterwarnings("ignore:mithril. plugin:RuntimeWarning")
@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_plugins: None) -> None:
    import mithril as ml

    text = page.read_text(encoding="utf-8")
    installed = set(ml.plugins.backends())
    missing = sorted(required_backends(text) - installed)
    installed |= importable_requirements(text)
    if missing:
        pytest.skip(f"{page.name} needs backend(s) not installed: {', '.join(missing)}")
    monkeypatch.chdir(tmp_path)
    for note in run_page(page, installed):
        warnings.warn(f"{page.name}: {note} (not installed); block not run", UserWarning, stacklevel=1)


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
    prose = re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    bad = [
        target
        for target in re.findall(r"\]\(([^)\s]+?\.md)(?:#[\w-]*)?\)", prose)
        if "://" not in target and not (page.parent / target).resolve().is_file()
    ]
    assert not bad, f"{page.name} links to missing page(s) {bad}"


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
    guarded = parse_blocks("<!-- docs-test: requires jax, ggml -->\n\n```python\nb = ml.GGMLBackend()\n```\n")
    assert guarded[0].requires == {"jax", "ggml"} and not guarded[0].skip
    assert required_backends("<!-- docs-test: requires ggml -->\n```python\nml.GGMLBackend()\n```\n") == set()
    modules = "<!-- docs-test: requires torch, pytest, no_such_module_xyz -->\n```python\nx = 1\n```\n"
    assert importable_requirements(modules) == {"pytest"}
