"""Loading untrusted files stays safe (issue 19, item 4): nothing in the tree unpickles.

``pickle``/``torch.load``/``joblib`` run code from the file they read; ``np.load`` does too unless
``allow_pickle=False`` is given. The project's own formats are safetensors and GGUF, read by checked
readers (tests/reliability/test_catalogue.py corrupts them); this test keeps the rest out.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["packages", "tests", "examples", "benchmarks", "docs"]
UNSAFE = re.compile(
    r"\b(import pickle|from pickle|pickle\.loads?|cPickle|dill\.|joblib\.load|torch\.load|"
    r"shelve\.open|marshal\.loads?)\b"
)
NP_LOAD = re.compile(r"\bnp\.load\(|\bnumpy\.load\(")


def _files() -> list[Path]:
    out = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md") and path.is_file() and path != Path(__file__).resolve():
                out.append(path)
    return out


def test_nothing_unpickles():
    found = []
    for path in _files():
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if UNSAFE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
            if NP_LOAD.search(line) and "allow_pickle=False" not in line:
                found.append(f"{path.relative_to(ROOT)}:{i}: np.load without allow_pickle=False: {line.strip()}")
    assert not found, "unsafe loading of files:\n" + "\n".join(found)
