"""docs/primitives.md is generated from the primitive definitions and must match them."""

from __future__ import annotations

import difflib
from pathlib import Path

from mithril.primitives import CORE_PRIMITIVES, registry
from mithril.testing.primitive_reference import REGENERATE, markdown

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "primitives.md"


def test_docs_primitives_md_is_generated_from_the_definitions() -> None:
    want = markdown()
    have = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if have != want:
        diff = "".join(
            difflib.unified_diff(have.splitlines(True), want.splitlines(True), "docs/primitives.md", "generated", n=1)
        )
        raise AssertionError(
            f"docs/primitives.md is out of date with the primitive definitions; regenerate it "
            f"with\n\n    {REGENERATE}\n\n{diff[:4000]}"
        )


def test_every_core_primitive_has_a_section_with_its_kernel_call() -> None:
    text = markdown()
    for name in registry.names():
        if registry.origin(name) == "mithril":
            assert f"### `{name}`\n" in text, name
    for name in CORE_PRIMITIVES:
        assert f"`{registry.get(name).kernel_call()}`" in text, name


def test_the_page_is_in_the_site_navigation() -> None:
    assert "primitives.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
