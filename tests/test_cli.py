"""The ``mithril`` command line, run as a user runs it: ``python -m mithril ...`` in a subprocess.

Also runs every command shown on docs/cli.md (in ```console blocks, ``$ mithril ...`` lines) and
checks its exit status; a block marked ``<!-- cli-test: exact -->`` must print exactly what the
page shows, ``<!-- cli-test: requires NAME -->`` needs a backend or module, ``<!-- cli-test: skip -->``
is not run. Identical commands run once per session (the ones that import torch and JAX take seconds).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mithril as ml

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "cli.md"


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _env(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MITHRIL_STRICT_PLUGINS", "MITHRIL_DISABLE_PLUGINS")}
    env.update(extra)
    return env


def mithril(
    *args: str,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mithril", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or _env(),
        timeout=300,
    )


_done: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}


def cached(*args: str) -> subprocess.CompletedProcess[str]:
    """A command that reads no file, run once per session (the docs page and the tests share them)."""
    if args not in _done:
        _done[args] = mithril(*args)
    return _done[args]


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The same command through ``mithril.cli.main`` in this process (for the many corrupted-file cases)."""
    from mithril.cli import main

    status = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["mithril", *args], status, out, err)


def one_line_error(r: subprocess.CompletedProcess[str], status: int = 2) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mithril: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ------------------------------------------------------------------ the command itself
def test_no_command_prints_help_and_bad_command_is_one_line(capsys: pytest.CaptureFixture[str]):
    r = cached()
    assert r.returncode == 0 and "plugins" in r.stdout and "summary" in r.stdout, r.stdout + r.stderr
    line = one_line_error(cached("frobnicate"))
    assert "unknown command 'frobnicate'" in line and "plugins, backends, info, check, summary" in line
    line = one_line_error(in_process(capsys, "summary"))
    assert "FILE" in line and "mithril summary --help" in line
    line = one_line_error(in_process(capsys, "plugins", "--no-such-option"))
    assert "--no-such-option" in line


def test_version_and_console_script():
    r = cached("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mithril {ml.__version__}"
    script = Path(sys.executable).with_name("mithril")
    if not script.exists():
        pytest.skip("no `mithril` console script next to this Python (reinstall the core after adding it)")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"mithril {ml.__version__}", r.stderr


# ------------------------------------------------------------------ plugins
needs_swish = pytest.mark.skipif(not has("mithril_swish"), reason="the test plugin mithril-swish is not installed")


@needs_swish
def test_plugins_table_lists_broken_entry_points_with_the_reason():
    r = cached("plugins")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "plugin load warnings leak into the output: " + r.stderr
    rows = {line.split()[2]: line for line in r.stdout.splitlines()[1:] if line.startswith("mithril-")}
    assert re.match(
        r"mithril-swish\s+0\.1\.0\s+broken_import\s+failed\s+import failed: ModuleNotFoundError: "
        r"No module named 'mithril_swish.does_not_exist'$",
        rows["broken_import"],
    ), rows
    assert re.match(r"mithril-swish\s+0\.1\.0\s+too_new\s+failed\s+written for plugin API 99", rows["too_new"])
    assert re.match(r"mithril-swish\s+0\.1\.0\s+swish\s+loaded\s+primitives: swish$", rows["swish"])
    assert re.search(r"\d+ plugins: \d+ loaded, 2 failed", r.stdout)


@needs_swish
def test_plugins_json():
    r = cached("plugins", "--json")
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    broken, too_new, swish = plugins["broken_import"], plugins["too_new"], plugins["swish"]
    assert (broken["distribution"], broken["version"], broken["status"]) == ("mithril-swish", "0.1.0", "failed")
    assert "mithril_swish.does_not_exist" in broken["reason"]
    assert too_new["status"] == "failed" and "plugin API 99" in too_new["reason"]
    assert swish["status"] == "loaded" and swish["primitives"] == ["swish"] and swish["reason"] is None
    assert swish["kernels"] is None  # only with --kernels
    for name in ml.plugins.backend_names():
        owner = [p for p in plugins.values() if name in p["backends"]]
        assert owner and owner[0]["status"] == "loaded", (name, plugins)


def test_disabled_plugin_and_kernels():
    # torch and JAX disabled, so that asking for kernels imports neither (a plugin's kernel hook would)
    r = mithril("plugins", "--json", "--kernels", env=_env((("MITHRIL_DISABLE_PLUGINS", "torch,jax"),)))
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins["torch"]["status"] == "disabled" and plugins["torch"]["backends"] == []
    assert plugins["jax"]["reason"] == "disabled by the user"
    if "swish" in plugins and "numpy" in plugins:
        assert "numpy:swish" in plugins["swish"]["kernels"] and "torch:swish" not in plugins["swish"]["kernels"]
    assert all(isinstance(p["kernels"], list) for p in plugins.values())


# ------------------------------------------------------------------ a third party's backend
THIRD_PARTY = {
    "wrongadd_backend/__init__.py": "",
    "wrongadd_backend/plugin.py": """
        from mithril.plugins import hookimpl

        MITHRIL_PLUGIN_API = 1


        @hookimpl
        def mithril_register_backends(register):
            register("wrongadd_backend.backend:WrongAddBackend", name="wrongadd")
    """,
    "wrongadd_backend/backend.py": """
        from mithril_numpy import NumpyBackend


        class WrongAddBackend(NumpyBackend):
            '''NumPy, except that add subtracts.'''

            name = "wrongadd"
            distribution = "wrongadd-backend"

            def core_kernels(self):
                kernels = dict(super().core_kernels())
                kernels["add"] = lambda left, right: left - right
                return kernels
    """,
    "wrongadd_backend-0.3.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: wrongadd-backend\nVersion: 0.3.0\n",
    "wrongadd_backend-0.3.0.dist-info/entry_points.txt": "[mithril]\nwrongadd = wrongadd_backend.plugin\n",
}


@pytest.fixture(scope="module")
def third_party_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where a third party's backend distribution is installed (a dist-info on PYTHONPATH)."""
    if not has("mithril_numpy"):
        pytest.skip("the test backend subclasses NumpyBackend")
    site = tmp_path_factory.mktemp("site")
    for name, text in THIRD_PARTY.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return _env((("PYTHONPATH", path),))


def test_third_party_backend_is_listed_and_checked(third_party_env):
    r = mithril("plugins", "--json", env=third_party_env)
    entry = {p["name"]: p for p in json.loads(r.stdout)}["wrongadd"]
    assert (entry["distribution"], entry["version"], entry["backends"]) == ("wrongadd-backend", "0.3.0", ["wrongadd"])

    r = mithril("backends", "--json", "wrongadd", env=third_party_env)
    assert r.returncode == 0, r.stderr
    (b,) = json.loads(r.stdout)
    assert (b["status"], b["distribution"], b["version"]) == ("ok", "wrongadd-backend", "0.3.0")
    assert b["dtypes"] == ["float16", "float32", "float64"] and b["devices"] == [{"device": "cpu"}]

    r = mithril("check", "wrongadd", "--only", "add", env=third_party_env)
    assert r.returncode == 1, r.stdout + r.stderr
    head = r.stdout.splitlines()[0]
    assert re.match(
        r"mithril check wrongadd: \d+ passed, [1-9]\d* failed, 0 skipped in [\d.]+ s "
        r"\(WrongAddBackend, float32, float64\)$",
        head,
    ), head
    failures = [line for line in r.stdout.splitlines() if line.startswith("  test_primitive_")]
    assert failures and all("[wrongadd-add-" in line and "Mismatched elements" in line for line in failures), r.stdout
    assert "result: FAILED" in r.stdout and "Traceback" not in r.stdout + r.stderr

    r = mithril("check", "wrongadd", "--only", "sub,mul", "--dtype", "float64", "-k", "forward", env=third_party_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.match(
        r"mithril check wrongadd: [1-9]\d* passed, 0 failed, 0 skipped .*float64\)$", r.stdout.splitlines()[0]
    ), r.stdout


# ------------------------------------------------------------------ backends, info
def test_backends_json():
    r = cached("backends", "--json")
    assert r.returncode == 0, r.stderr
    backends = {b["name"]: b for b in json.loads(r.stdout)}
    assert set(ml.plugins.backend_names()) | {"numpy", "torch", "jax", "ggml"} <= set(backends)
    for name, cls in ml.plugins.backends().items():
        b = backends[name]
        assert b["status"] == "ok", b
        assert b["dtypes"] == [d.value for d in cls.supported_dtypes]
        assert b["supports_jit"] == cls.supports_jit
        assert b["devices"] and b["devices"][0]["device"].startswith("cpu"), b
    if "numpy" in backends and backends["numpy"]["status"] == "ok":
        assert backends["numpy"]["devices"] == [{"device": "cpu"}]
    if "jax" in ml.plugins.backend_names():
        jax_devices = [d["device"] for d in backends["jax"]["devices"]]
        assert jax_devices[0] == "cpu:0" and all(re.fullmatch(r"(cpu|gpu|tpu):\d+", d) for d in jax_devices)
    for b in backends.values():
        if b["status"] == "not installed":
            assert f"pip install -c constraints.txt -e packages/mithril-{b['name']}" in b["reason"]
            assert "mithril[" not in b["reason"]


def test_backends_disabled_and_unknown():
    r = mithril("backends", "--json", "--no-devices", "jax", env=_env((("MITHRIL_DISABLE_PLUGINS", "jax"),)))
    assert r.returncode == 0, r.stderr
    (b,) = json.loads(r.stdout)
    assert b["status"] == "disabled" and "disabled" in b["reason"] and b["devices"] is None
    line = one_line_error(cached("backends", "tpu_v9"))
    assert "no backend named 'tpu_v9'" in line


def test_info_json():
    # the devices part is what `mithril backends --json` gives (above), and docs/cli.md runs `mithril info`
    r = cached("info", "--json", "--no-devices")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    import platform

    assert info["python"]["version"] == platform.python_version()
    assert info["mithril"]["version"] == ml.__version__
    assert info["libraries"]["numpy"] == np.__version__
    assert info["libraries"]["pluggy"]
    from importlib import metadata

    for dist in ("mithril-numpy", "mithril-torch", "mithril-jax", "mithril-ggml"):
        try:
            want = metadata.version(dist)
        except metadata.PackageNotFoundError:
            want = None
        assert info["distributions"][dist] == want
    assert "backends" not in info
    if has("mithril_swish"):
        assert {p["name"]: p["status"] for p in info["plugins"]}["broken_import"] == "failed"


# ------------------------------------------------------------------ check
@pytest.mark.skipif(not has("mithril_numpy"), reason="mithril-numpy is not installed")
def test_check_numpy_subset():
    # the whole suite takes ~10 s for NumPy; a subset of primitives and a block is enough here
    r = cached("check", "numpy", "--only", "add,matmul,linear")  # the command docs/cli.md shows
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.match(
        r"mithril check numpy: (\d+) passed, 0 failed, 0 skipped in [\d.]+ s "
        r"\(NumpyBackend, float32, float64\)$",
        r.stdout.splitlines()[0],
    )
    assert m and int(m.group(1)) > 20, r.stdout
    assert r.stdout.rstrip().endswith("result: ok")


def test_check_user_errors(capsys: pytest.CaptureFixture[str]):
    assert "no backend named 'nope'" in one_line_error(cached("check", "nope"))
    if has("mithril_numpy"):
        assert "Wrong expression" in one_line_error(cached("check", "numpy", "-k", "forward and ("))
        line = one_line_error(in_process(capsys, "check", "numpy", "--only", "no_such_primitive"))
        assert "--only: no primitive" in line
    if "ggml" in ml.plugins.backend_names():
        line = one_line_error(in_process(capsys, "check", "ggml", "--dtype", "float64"))
        assert "does not support float64" in line


# ------------------------------------------------------------------ summary: safetensors
def write_safetensors(
    path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict[str, str] | None = None
) -> None:
    """A safetensors file by hand: 8-byte header length, JSON header, data."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.fixture
def safetensors_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.safetensors"
    write_safetensors(
        path,
        {
            "encoder.weight": ("F32", [4, 3], np.arange(12, dtype=np.float32).tobytes()),
            "encoder.bias": ("F16", [4], np.zeros(4, np.float16).tobytes()),
            "steps": ("I64", [], np.int64(7).tobytes()),
            "embedding": ("BF16", [10, 8], bytes(160)),
        },
        metadata={"format": "pt", "note": "written by test_cli"},
    )
    return path


def test_summary_safetensors(safetensors_file: Path, capsys: pytest.CaptureFixture[str]):
    r = mithril("summary", str(safetensors_file))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("weights.safetensors: safetensors, 4 tensors, 97 parameters, 224 B of tensor data")
    assert re.search(r"^  format\s+pt$", r.stdout, re.M)
    assert re.search(r"^  note\s+written by test_cli$", r.stdout, re.M)
    assert re.search(r"^encoder\.weight\s+F32\s+\[4, 3\]\s+12\s+48 B$", r.stdout, re.M), r.stdout
    assert re.search(r"^steps\s+I64\s+\[\]\s+1\s+8 B$", r.stdout, re.M), r.stdout
    assert re.search(r"^embedding\s+BF16\s+\[10, 8\]\s+80\s+160 B$", r.stdout, re.M), r.stdout

    r = mithril("summary", "--json", str(safetensors_file))
    doc = json.loads(r.stdout)
    assert (doc["format"], doc["tensor_count"], doc["total_parameters"], doc["total_bytes"]) == (
        "safetensors",
        4,
        97,
        224,
    )
    assert doc["metadata"] == {"format": "pt", "note": "written by test_cli"}
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert by_name["embedding"]["shape"] == [10, 8] and by_name["embedding"]["dtype"] == "BF16"
    assert doc["dtypes"]["F32"] == {"tensors": 1, "parameters": 12, "bytes": 48}

    r = in_process(capsys, "summary", "--limit", "1", str(safetensors_file))
    assert "... and 3 more tensors (--limit)" in r.stdout


@pytest.mark.skipif(not has("safetensors"), reason="the safetensors package is not installed")
def test_summary_of_a_file_written_by_save_params(tmp_path: Path):
    from mithril.io.safetensors import save_params

    params = {"a.weight": np.ones((3, 5), np.float32), "a.bias": np.zeros(3, np.float64), "n": np.arange(4)}
    save_params(params, tmp_path / "p.safetensors", metadata={"k": "v"})
    doc = json.loads(mithril("summary", "--json", str(tmp_path / "p.safetensors")).stdout)
    assert {t["name"]: (t["dtype"], t["shape"]) for t in doc["tensors"]} == {
        "a.weight": ("F32", [3, 5]),
        "a.bias": ("F64", [3]),
        "n": ("I64", [4]),
    }
    assert doc["metadata"] == {"k": "v"} and doc["total_bytes"] == 60 + 24 + 32


def _corruptions(good: bytes) -> dict[str, bytes]:
    n = struct.unpack("<Q", good[:8])[0]
    header = good[8 : 8 + n]
    return {
        "empty": b"",
        "short": good[:5],
        "truncated header": good[: 8 + n // 2],
        "truncated data": good[:-10],
        "huge length": struct.pack("<Q", 2**62) + good[8:],
        "not json": good[:8] + b"\xff" * n + good[8 + n :],
        "json list": struct.pack("<Q", 2) + b"[]",
        "bad offsets": good[:8]
        + header.replace(b'"data_offsets": [0, 48]', b'"data_offsets": [0, 40]')
        + good[8 + n :],
    }


def test_summary_of_a_truncated_safetensors_is_one_line_exit_2(safetensors_file: Path, tmp_path: Path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(safetensors_file.read_bytes()[:-10])
    line = one_line_error(mithril("summary", str(path)))
    assert line == (
        f"mithril: error: {path}: truncated: tensor 'embedding' ends at byte 224 of the data, which has 214 bytes"
    )


@pytest.mark.parametrize(
    "kind",
    ["empty", "short", "truncated header", "truncated data", "huge length", "not json", "json list", "bad offsets"],
)
def test_summary_of_a_broken_safetensors(
    kind: str, safetensors_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = _corruptions(safetensors_file.read_bytes())[kind]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bad)
    line = one_line_error(in_process(capsys, "summary", str(path)))
    assert line.startswith(f"mithril: error: {path}: ")


def test_summary_missing_and_unknown_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert "no such file" in one_line_error(in_process(capsys, "summary", str(tmp_path / "none.safetensors")))
    assert "is a folder" in one_line_error(in_process(capsys, "summary", str(tmp_path)))
    (tmp_path / "notes.txt").write_text("hello\n")
    line = one_line_error(in_process(capsys, "summary", str(tmp_path / "notes.txt")))
    assert "neither a safetensors nor a GGUF file" in line


# ------------------------------------------------------------------ summary: GGUF
def _gguf_string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path) -> None:
    """A GGUF v3 file by hand: every metadata value type, an F32 and a Q8_0 tensor."""
    kv = [
        ("general.architecture", 8, _gguf_string("llama")),
        ("general.name", 8, _gguf_string("tiny test model")),
        ("llama.block_count", 4, struct.pack("<I", 2)),
        ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
        ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + b"".join(map(_gguf_string, ["<s>", "a", "b"]))),
        ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0.0, -1.0, -2.0)),
        ("test.flag", 7, struct.pack("<?", True)),
        ("test.i64", 11, struct.pack("<q", -5)),
        ("test.f64", 12, struct.pack("<d", 0.25)),
    ]
    tensors = [("token_embd.weight", [64, 3], 0, 64 * 3 * 4), ("blk.0.attn_q.weight", [64, 64], 8, 64 * 64 // 32 * 34)]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, value in kv:
        out += _gguf_string(key) + struct.pack("<I", vtype) + value
    offset = 0
    for name, dims, gtype, nbytes in tensors:
        out += _gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", gtype, offset)
        offset += nbytes + (-nbytes % 32)
    out += b"\0" * (-len(out) % 32)
    path.write_bytes(out + b"\0" * offset)


def test_summary_gguf_by_hand(tmp_path: Path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    r = mithril("summary", "--json", str(path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["format"], doc["version"], doc["tensor_count"]) == ("gguf", 3, 2)
    meta, types = doc["metadata"], doc["metadata_types"]
    assert meta["general.name"] == "tiny test model" and meta["llama.block_count"] == 2
    assert meta["tokenizer.ggml.tokens"] == ["<s>", "a", "b"] and meta["tokenizer.ggml.scores"] == [0.0, -1.0, -2.0]
    assert (meta["test.flag"], meta["test.i64"], meta["test.f64"]) == (True, -5, 0.25)
    assert types["tokenizer.ggml.tokens"] == "array[string]" and types["llama.rope.freq_base"] == "f32"
    t = {t["name"]: t for t in doc["tensors"]}
    assert (t["token_embd.weight"]["dtype"], t["token_embd.weight"]["shape"]) == ("F32", [3, 64])
    assert (t["blk.0.attn_q.weight"]["dtype"], t["blk.0.attn_q.weight"]["bytes"]) == ("Q8_0", 64 * 64 // 32 * 34)
    assert doc["total_parameters"] == 64 * 3 + 64 * 64

    r = mithril("summary", str(path))
    assert r.stdout.startswith("tiny.gguf: GGUF v3, 2 tensors, 4,288 parameters")
    assert re.search(r"^  tokenizer\.ggml\.tokens\s+array\[string\]\s+\[<s>, a, b\] \(3 items\)$", r.stdout, re.M)
    assert re.search(r"^blk\.0\.attn_q\.weight\s+Q8_0\s+\[64, 64\]\s+4,096\s+4\.2 KiB$", r.stdout, re.M), r.stdout


def test_summary_of_a_truncated_gguf_is_one_line_exit_2(tmp_path: Path):
    good = tmp_path / "good.gguf"
    write_gguf(good)
    path = tmp_path / "cut.gguf"
    path.write_bytes(good.read_bytes()[:100])
    line = one_line_error(mithril("summary", str(path)))
    assert line.startswith(f"mithril: error: {path}: ") and "truncated" in line


@pytest.mark.parametrize("cut", [0, 3, 7, 20, 60, 200, 400, -1])
def test_summary_of_a_gguf_cut_anywhere(cut: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    good = tmp_path / "good.gguf"
    write_gguf(good)
    data = good.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    line = one_line_error(in_process(capsys, "summary", str(path)))
    assert line.startswith(f"mithril: error: {path}: ")


def test_summary_of_a_gguf_with_a_corrupted_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    good = tmp_path / "good.gguf"
    write_gguf(good)
    data = bytearray(good.read_bytes())
    data[24:32] = struct.pack("<Q", 2**60)  # the length of the first key
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    assert "corrupted or truncated" in one_line_error(in_process(capsys, "summary", str(path)))


def test_summary_of_gguf_files_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    old = tmp_path / "v1.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<I", 1) + bytes(64))
    assert "GGUF version 1 is not supported" in one_line_error(in_process(capsys, "summary", str(old)))
    nested = tmp_path / "nested.gguf"
    value = struct.pack("<IQ", 9, 1) * 50 + struct.pack("<IQ", 4, 0)  # arrays of arrays of ... of u32
    nested.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _gguf_string("deep") + struct.pack("<I", 9) + value)
    assert "nested more than" in one_line_error(in_process(capsys, "summary", str(nested)))
    (tmp_path / "magic.gguf").write_bytes(b"GGML" + bytes(60))
    assert "not a GGUF file" in one_line_error(in_process(capsys, "summary", str(tmp_path / "magic.gguf")))


@pytest.mark.skipif(
    "ggml" not in ml.plugins.backend_names() or not has("mithril_ggml"), reason="mithril-ggml is not installed"
)
def test_summary_of_a_gguf_written_by_mithril_ggml(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from mithril.models import Linear, Model, Relu
    from mithril_ggml import save_gguf

    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=8)
    params = ml.compile(model, ml.NumpyBackend(), shapes={"input": [2, 32]}).randomize_params(seed=0)
    deploy = ml.compile(model, ml.GGMLBackend(quantize="int8"), shapes={"input": [2, 32]}, static_inference=True)
    deploy.evaluate(params, {"input": np.zeros((2, 32), np.float32)})
    path = tmp_path / "mlp.gguf"
    save_gguf(deploy, path)

    doc = json.loads(mithril("summary", "--json", str(path)).stdout)
    assert doc["metadata"]["general.architecture"] == "mithril" and doc["metadata"]["mithril.quantize"] == "int8"
    stored = {t["param"]: (t["dtype"], t["shape"]) for t in doc["tensors"]}
    assert stored == {
        "linear_0.weight": ("Q8_0", [64, 32]),
        "linear_0.bias": ("F32", [64]),
        "linear_1.weight": ("Q8_0", [8, 64]),
        "linear_1.bias": ("F32", [8]),
    }
    assert doc["total_parameters"] == 64 * 32 + 64 + 8 * 64 + 8
    r = mithril("summary", str(path))
    assert re.search(r"^p\d\s+Q8_0\s+\[64, 32\]\s+2,048\s+2\.1 KiB\s+linear_0\.weight$", r.stdout, re.M), r.stdout

    data = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    assert "truncated" in one_line_error(in_process(capsys, "summary", str(tmp_path / "cut.gguf")))


@pytest.mark.skipif(not has("ggml"), reason="ggml-python is not installed")
def test_ggml_type_table_matches_ggml():
    from ggml import ggml as lib

    from mithril.headers import GGML_TYPES

    for t in range(lib.GGML_TYPE_COUNT):
        if lib.ggml_blck_size(t) == 0:  # removed types
            assert t not in GGML_TYPES
            continue
        name = lib.ggml_type_name(t).decode().upper()
        assert GGML_TYPES.get(t) == (name, lib.ggml_blck_size(t), lib.ggml_type_size(t)), t


# ------------------------------------------------------------------ the install advice
def test_backend_not_installed_error_advises_our_source_not_the_index():
    from mithril.errors import BackendNotInstalledError
    from mithril.plugins.manager import MithrilPluginManager

    pm = MithrilPluginManager()
    pm._loaded = True  # no entry points: nothing is installed
    with pytest.raises(BackendNotInstalledError) as info:
        pm.backend_class("torch")
    message = str(info.value)
    assert "pip install -c constraints.txt -e packages/mithril-torch" in message
    assert "pip install -c constraints.txt --find-links dist mithril-torch" in message
    assert "mithril[" not in message


# ------------------------------------------------------------------ docs/cli.md
CLI_MARKER = re.compile(r"^<!--\s*cli-test:\s*(?P<what>exact|skip|requires\s+(?P<names>[\w\s,-]+?))\s*-->$")


def page_commands() -> list[tuple[str, str, set[str], bool, bool]]:
    """(command, expected output, requirements, exact, skip) for every ``$ mithril`` line of the page."""
    if not CLI_PAGE.exists():
        return []
    lines = CLI_PAGE.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```console"):
            i += 1
            continue
        exact = skip = False
        requires: set[str] = set()
        j = i - 1
        while j >= 0 and (not lines[j].strip() or CLI_MARKER.match(lines[j].strip())):
            m = CLI_MARKER.match(lines[j].strip())
            if m and m.group("what") == "exact":
                exact = True
            elif m and m.group("what") == "skip":
                skip = True
            elif m:
                requires |= {n.strip() for n in m.group("names").split(",") if n.strip()}
            j -= 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        command: str | None = None
        expected: list[str] = []
        for line in body + ["$ "]:
            if line.startswith("$ "):
                if command is not None:
                    out.append((command, "\n".join(expected), requires, exact, skip))
                command, expected = line[2:].strip() or None, []
            else:
                expected.append(line)
    return out


@pytest.fixture(scope="module")
def page_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the page's python blocks ran (they write the files the commands read)."""
    name = "_mithril_test_cli_docs_parser"
    docs = sys.modules.get(name)
    if docs is None:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "test_docs.py")
        assert spec and spec.loader
        docs = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(docs)
    folder = tmp_path_factory.mktemp("cli-page")
    installed = set(ml.plugins.backend_names()) | {n for n in ("safetensors",) if has(n)}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        namespace: dict[str, object] = {"__name__": "docs_cli"}
        for block in docs.python_blocks(CLI_PAGE.read_text(encoding="utf-8")):
            if not block.skip and block.requires <= installed:
                exec(compile(block.code, f"<docs/cli.md line {block.line}>", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return folder


@pytest.mark.parametrize("command,expected,requires,exact,skip", [pytest.param(*c, id=c[0]) for c in page_commands()])
def test_commands_on_the_docs_page(
    command: str, expected: str, requires: set[str], exact: bool, skip: bool, page_folder: Path
):
    if skip:
        pytest.skip("marked cli-test: skip")
    missing = {n for n in requires if n not in ml.plugins.backend_names() and not has(n)}
    if missing:
        pytest.skip(f"needs {', '.join(sorted(missing))}")
    argv = shlex.split(command)
    assert argv[0] == "mithril", command
    reads_files = argv[1:2] == ["summary"]
    r = mithril(*argv[1:], cwd=page_folder) if reads_files else cached(*argv[1:])
    shown = r.stdout + r.stderr
    if expected.startswith("mithril: error:"):
        line = one_line_error(r)
        if exact:
            assert line == expected, f"docs/cli.md shows\n{expected}\nthe command prints\n{line}"
        return
    want_status = 1 if "result: FAILED" in expected else 0
    assert r.returncode == want_status, f"{command}: exit status {r.returncode}\n{shown}"
    if exact:
        assert r.stdout.rstrip("\n") == expected, f"docs/cli.md shows\n{expected}\nthe command prints\n{r.stdout}"
    elif "--json" in argv:
        json.loads(r.stdout)
    else:
        if expected.split() and expected.split()[0] != "...":
            assert r.stdout.split()[:1] == expected.split()[:1], f"{command}:\n{r.stdout}"
        for heading in (line for line in expected.splitlines() if line.endswith(":")):
            assert heading in r.stdout.splitlines(), f"{command}: no line {heading!r} in\n{r.stdout}"


def test_the_page_has_commands():
    commands = [c for c, *_ in page_commands()]
    for name in ("plugins", "backends", "info", "check", "summary"):
        assert any(c.startswith(f"mithril {name}") for c in commands), name
