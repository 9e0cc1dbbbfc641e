"""No page of the documentation announces as "coming" (or "in development") what already exists.

Every occurrence of a phrase of :data:`STALE` (case-insensitive, as whole words) in docs/*.md, a
README, CONTRIBUTING.md or a CHANGELOG fails, unless its sentence is in :data:`ALLOWED` with the reason it is still true. When a
feature a page announces ships, the page changes with it; when a page must announce something that
truly does not exist yet, add the sentence here with the reason (and remove it when it ships).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        *(ROOT / "packages").glob("*/README.md"),
        *(ROOT / "packages").glob("*/CHANGELOG.md"),
    ]
)

STALE = re.compile(r"\b(coming(\s+soon)?|in\s+development|being\s+written|work\s+in\s+progress)\b", re.I)

#: (page relative to the repository root, a part of the sentence) -> why it is still true
ALLOWED: dict[tuple[str, str], str] = {}


def sentences(text: str) -> list[tuple[int, str]]:
    """(line, sentence) of a page's prose: code blocks dropped, sentences joined across line breaks."""
    prose = re.sub(r"^(```|~~~).*?^\1\s*$", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    out = []
    for para in re.finditer(r"(?:[^\n]|\n(?!\s*\n))+", prose):  # paragraphs: split at blank lines
        for m in re.finditer(r"[^.!?\s][^.!?]*(?:[.!?]|$)", para.group(0)):
            line = prose.count("\n", 0, para.start() + m.start()) + 1
            out.append((line, " ".join(m.group(0).split())))
    return out


def stale_sentences(page: Path, text: str | None = None) -> list[str]:
    rel = page.relative_to(ROOT).as_posix() if page.is_absolute() else str(page)
    found = []
    for line, sentence in sentences(page.read_text(encoding="utf-8") if text is None else text):
        if not STALE.search(sentence):
            continue
        if any(p == rel and part in sentence for (p, part) in ALLOWED):
            continue
        found.append(f"{rel}:{line}: {sentence!r}")
    return found


def test_no_page_calls_an_existing_feature_coming() -> None:
    found = [s for page in PAGES for s in stale_sentences(page)]
    assert not found, (
        "these sentences announce something as coming / in development; check the claim against "
        "the code and rewrite it, or add it to ALLOWED in tests/test_stale_words.py with the reason "
        "it is still true:\n" + "\n".join(found)
    )


def test_the_check_finds_the_phrases_as_words_only() -> None:
    page = Path("docs/example.md")
    text = (
        "GGML is Coming.\nThe upcoming release is unrelated. Backends:\n```python\n# coming soon in code\n```\n"
        "A training API is in\ndevelopment for now."
    )
    found = stale_sentences(page, text)
    assert found == [
        "docs/example.md:1: 'GGML is Coming.'",
        "docs/example.md:6: 'A training API is in development for now.'",
    ]
    ALLOWED[("docs/example.md", "training API is in development")] = "an example"
    try:
        assert stale_sentences(page, text) == ["docs/example.md:1: 'GGML is Coming.'"]
    finally:
        del ALLOWED[("docs/example.md", "training API is in development")]
    for (page_name, _), reason in ALLOWED.items():
        assert (ROOT / page_name).exists() and reason.strip(), page_name
