"""Run the code of the original quick-start seed as written.

The seed (``004_a7b15c35efa1536a.txt``) lives in the ``shared/seeds`` folder
beside the repository (CI clones the repository next to ``shared/``), or in the
folder named by ``MITHRIL_SEEDS_DIR``; without it these tests are skipped.

All python blocks run in one namespace, in order, except the "Multi-Backend
Workflow" block, which is checked statement by statement: its PyTorch line must
run; its JAX line (a TPU with ``device_mesh``) must fail with a Mithril error
rather than crash; its GGML line must run where the GGML backend is installed,
and otherwise raise ``BackendNotInstalledError`` saying what to install.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SEED_NAME = "004_a7b15c35efa1536a.txt"
MULTI_BACKEND_HEADING = "Multi-Backend Workflow"
NEEDED_BACKENDS = ("torch", "jax", "numpy")

pytestmark = pytest.mark.filterwarnings("ignore:mithril. plugin:RuntimeWarning")


def seeds_dir() -> Path:
    env = os.environ.get("MITHRIL_SEEDS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "seeds"


def seed_path() -> Path | None:
    folder = seeds_dir()
    exact = folder / SEED_NAME
    if exact.is_file():
        return exact
    matches = sorted(folder.glob("004_*.txt")) if folder.is_dir() else []
    return matches[0] if matches else None


@dataclass
class SeedBlock:
    index: int
    line: int
    code: str
    section: str  # the nearest "## " heading above the block


def seed_blocks(text: str) -> list[SeedBlock]:
    blocks: list[SeedBlock] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip().startswith("```python"):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(SeedBlock(len(blocks), start + 1, "\n".join(body) + "\n", section))
        i += 1
    return blocks


@dataclass
class SeedRun:
    namespace: dict[str, object]
    stdout: dict[int, str] = field(default_factory=dict)
    multi_backend: SeedBlock | None = None


def _exec(code: str, namespace: dict[str, object], where: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"<{where}>", "exec"), namespace)
    return out.getvalue()


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> SeedRun:
    path = seed_path()
    if path is None:
        pytest.skip(f"the seed {SEED_NAME} is not in {seeds_dir()} (set MITHRIL_SEEDS_DIR)")
    import mithril as ml

    missing = [b for b in NEEDED_BACKENDS if b not in ml.plugins.backends()]
    if missing:
        pytest.skip(f"the quick-start seed needs backends not installed: {', '.join(missing)}")

    blocks = seed_blocks(path.read_text(encoding="utf-8"))
    assert blocks, f"no python blocks in {path}"
    run = SeedRun(namespace={"__name__": "seed_quickstart"})
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("seed"))
    try:
        for block in blocks:
            if MULTI_BACKEND_HEADING.lower() in block.section.lower():
                run.multi_backend = block
                continue
            where = f"{path.name}, python block {block.index} (line {block.line}, section {block.section!r})"
            try:
                run.stdout[block.index] = _exec(block.code, run.namespace, where)
            except Exception:
                pytest.fail(f"{where} failed:\n{block.code}\n{traceback.format_exc()}", pytrace=False)
    finally:
        os.chdir(cwd)
    return run


def multi_backend_statements(run: SeedRun) -> dict[str, str]:
    """The Multi-Backend block's statements, keyed by the name each assigns."""
    assert run.multi_backend is not None, f"no python block under '## {MULTI_BACKEND_HEADING}' in the seed"
    code = run.multi_backend.code
    statements = {}
    for node in ast.parse(code).body:
        assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name), ast.dump(node)
        statements[node.targets[0].id] = ast.get_source_segment(code, node)
    assert list(statements) == ["research_model", "scaling_model", "deploy_model"], list(statements)
    return statements


# ------------------------------------------------------------------ the tests
def test_seed_blocks_run(seed_run: SeedRun) -> None:
    printed = "".join(seed_run.stdout.values())
    for label in ("PyTorch output shape", "JAX output shape", "NumPy output shape", "CNN output shape"):
        line = next((ln for ln in printed.splitlines() if ln.startswith(label)), None)
        assert line is not None, f"{label!r} was not printed:\n{printed}"
        assert re.search(r"\b32, 10\b", line), line


def test_training_loss_falls(seed_run: SeedRun) -> None:
    printed = "".join(seed_run.stdout.values())
    losses = [float(v) for v in re.findall(r"Loss: (\S+)", printed)]
    assert len(losses) == 5, f"expected 5 epochs of 'Loss: x', got:\n{printed}"
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], f"the loss does not fall: {losses}"


def test_multi_backend_research_line_runs(seed_run: SeedRun) -> None:
    from mithril.physical.model import PhysicalModel

    namespace = dict(seed_run.namespace)
    _exec(multi_backend_statements(seed_run)["research_model"], namespace, "research_model")
    assert isinstance(namespace["research_model"], PhysicalModel)


def test_multi_backend_jax_tpu_line_is_a_mithril_error(seed_run: SeedRun) -> None:
    from mithril.errors import MithrilError

    namespace = dict(seed_run.namespace)
    with pytest.raises(MithrilError) as info:
        _exec(multi_backend_statements(seed_run)["scaling_model"], namespace, "scaling_model")
    assert type(info.value) is not MithrilError, "expected a specific subclass of MithrilError"
    assert str(info.value), "the error has no message"


def test_multi_backend_ggml_line(seed_run: SeedRun) -> None:
    import mithril as ml
    from mithril.errors import BackendNotInstalledError
    from mithril.physical.model import PhysicalModel

    namespace = dict(seed_run.namespace)
    statement = multi_backend_statements(seed_run)["deploy_model"]
    if "ggml" in ml.plugins.backends():
        _exec(statement, namespace, "deploy_model")
        assert isinstance(namespace["deploy_model"], PhysicalModel)
    else:
        advice = "pip install -c constraints.txt -e packages/mithril-ggml"
        with pytest.raises(BackendNotInstalledError, match=re.escape(advice)):
            _exec(statement, namespace, "deploy_model")
