"""Suite ``train``: the full training step (forward, loss, backward, AdamW update), Mithril against native.

What one call does (the unit that is timed): one optimizer step on a fixed batch, the
state carried from call to call.

* Mithril: ``result = step(state, {"input": x, "target": t}); state = result.state``, where
  ``step = ml.compile_step(model, backend, loss=..., optimizer=ml.optim.AdamW(...))``,
  on numpy (eager), torch eager, torch ``jit=True`` (one ``torch.compile`` of the whole
  step) and JAX ``jit=True`` (one ``jax.jit``, params and optimizer state donated).
* Native (``native_train.py``): ``torch.nn`` + ``torch.optim.AdamW`` eager
  (``zero_grad(set_to_none=True)``, ``loss.backward()``, ``opt.step()``); ``torch.compile``
  of that whole step function (default options, as Mithril's TorchBackend: dynamo breaks the
  graph at ``loss.backward()``, so it is the compiled forward+backward plus the compiled
  optimizer step); ``jax.jit`` of ``value_and_grad`` + ``optax.adamw`` with params,
  optimizer state and model state donated; NumPy by hand (forward, loss gradient,
  backward, an in-place AdamW loop).

Every variant uses AdamW with lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01.
Losses: seed MLP: MSE; seed CNN: cross-entropy over 10 classes; GPT: cross-entropy over the
vocabulary on token targets (the logits ``[B, T, V]`` flattened to ``[B*T, V]``).

Results end with a synchronisation (``torch.cuda.synchronize``; JAX: ``block_until_ready``
on the loss, which the step's single XLA computation produces with the new params); the
loss is not copied to the host inside the timed call.

Correctness first: before timing, every variant runs 3 steps from the same initial weights
and its 3 losses are compared with those of the group's first native variant (torch.nn
eager, jax.jit + optax, NumPy by hand); the largest relative difference must be below
:data:`LOSS_TOL` (:data:`LOSS_TOL_TF32` for torch on CUDA with cuDNN's TF32 allowed), else the row says ``CHECK FAILED`` (and so does the log). The relative
L2 difference of the trainable params after the 3 steps is reported too. The timed calls
continue from that state. The first of those steps (compilation included) is the
``first call``.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import models as M
import native_train as NT_
import numpy as np
from harness import Stats, Variant, measure_memory, ratio_stats, time_variants

#: largest relative difference of the first 3 losses against the group's reference
LOSS_TOL = 1e-4
#: the same on CUDA where cuDNN may run float32 convolutions in TF32 (torch's default,
#: ``torch.backends.cudnn.allow_tf32``): its 10-bit mantissa gives relative differences of
#: about 1e-3 between two algorithm choices (measured 9.8e-4 on the seed CNN, H200)
LOSS_TOL_TF32 = 5e-3
CHECK_STEPS = 3


def loss_tolerance(device: str) -> float:
    """:data:`LOSS_TOL`, or :data:`LOSS_TOL_TF32` on a CUDA device whose cuDNN may use TF32."""
    if device.startswith("cuda"):
        import torch

        if torch.backends.cudnn.allow_tf32:
            return LOSS_TOL_TF32
    return LOSS_TOL


@dataclass(frozen=True)
class TrainSpec:
    key: str
    title: str
    build: Callable[[], Any]  # the Mithril model whose "output" the loss reads
    input_shape: tuple[int, ...]
    loss: str  # mse | ce
    target_shape: tuple[int, ...]
    classes: int | None
    np_forward: Callable[..., Any]
    np_backward: Callable[..., Any]
    torch_module: Callable[[], Any]
    jax_forward: Callable[[], Any]  # -> forward(p, state, x) -> (y, state)
    tokens: int | None = None


def train_specs(level: str, gpt_cfg: M.GPTConfig | None = None) -> list[TrainSpec]:
    import native_jax as NJ
    import native_numpy as NN
    import native_torch as NT

    cnn_batch = 4 if level == "smoke" else 32
    if gpt_cfg is None:
        gpt_cfg = (
            M.GPTConfig(n_layers=1, d_model=64, n_heads=4, seq_len=16, vocab=64)
            if level == "smoke"
            else M.GPTConfig(n_layers=2)
        )
    cfg = gpt_cfg
    n_tok = cfg.batch * cfg.seq_len

    def gpt_np_fwd(p: Any, x: Any) -> Any:
        return NN.gpt_forward(cfg, p, x)

    def gpt_np_bwd(p: Any, c: Any, g: Any) -> Any:
        return NN.gpt_backward(cfg, p, c, g)

    return [
        TrainSpec(
            "seed_mlp",
            "seed MLP 20-64-10, B=32, MSE",
            M.seed_mlp,
            (32, 20),
            "mse",
            (32, 10),
            None,
            lambda p, x: NN.mlp_forward(p, x, 2),
            lambda p, c, g: NN.mlp_backward(p, c, g, 2)[0],
            NT.SeedMLP,
            lambda: NT_.jax_stateless(NJ.seed_mlp),
        ),
        TrainSpec(
            "seed_cnn",
            f"seed CNN (BatchNorm), B={cnn_batch}, cross-entropy over 10 classes",
            M.seed_cnn,
            (cnn_batch, 3, 32, 32),
            "ce",
            (cnn_batch,),
            10,
            NN.cnn_forward,
            NN.cnn_backward,
            NT.SeedCNN,
            NT_.jax_seed_cnn,
        ),
        TrainSpec(
            f"gpt{cfg.n_layers}",
            f"GPT {cfg.n_layers}L d={cfg.d_model} h={cfg.n_heads} T={cfg.seq_len} B={cfg.batch}, "
            f"cross-entropy over {cfg.vocab} tokens",
            lambda: M.gpt_lm(cfg),
            tuple(M.gpt_input_shape(cfg)),
            "ce",
            (n_tok,),
            cfg.vocab,
            gpt_np_fwd,
            gpt_np_bwd,
            lambda: NT.GPT(cfg),
            lambda: NT_.jax_stateless(NJ.gpt(cfg)),
            tokens=n_tok,
        ),
    ]


class _Ctx:
    """Shared data of one model: initial params (NumPy), input and target."""

    def __init__(self, spec: TrainSpec, seed: int = 0) -> None:
        import mithril as ml

        self.spec = spec
        self.model = spec.build()
        be = ml.NumpyBackend(dtype=ml.float32)
        pm = ml.compile(self.model, be, shapes={"input": list(spec.input_shape)})
        self.params = pm.randomize_params(seed=seed)
        self.trainable = list(pm.param_keys)
        self.state_keys = list(pm.state_keys)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal(spec.input_shape).astype(np.float32)
        if spec.loss == "mse":
            self.t = rng.standard_normal(spec.target_shape).astype(np.float32)
        else:
            self.t = rng.integers(0, spec.classes, size=spec.target_shape).astype(np.int64)
        #: losses of the first group's reference, to compare baselines across libraries
        self.cross_ref: tuple[str, list[float]] | None = None

    def loss_block(self) -> Any:
        from mithril.models import CrossEntropyLoss, MSELoss

        return MSELoss() if self.spec.loss == "mse" else CrossEntropyLoss()

    def optimizer(self) -> Any:
        import mithril as ml

        hp = NT_.HP
        return ml.optim.AdamW(lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], weight_decay=hp["weight_decay"])


# ------------------------------------------------------------------------------------------ runners
class Runner:
    """One variant: ``__call__`` makes one step (synchronised) and returns the loss (not on the host)."""

    def __call__(self) -> Any:
        raise NotImplementedError

    def params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    build_s: float | None = None


class MithrilRunner(Runner):
    def __init__(self, ctx: _Ctx, backend: Any, *, jit: bool, sync: Callable[[Any], Any]) -> None:
        import mithril as ml

        spec = ctx.spec
        t0 = time.perf_counter()
        self.step = ml.compile_step(
            ctx.model,
            backend,
            loss=ctx.loss_block(),
            optimizer=ctx.optimizer(),
            shapes={"input": list(spec.input_shape), "target": list(spec.target_shape)},
            jit=jit,
        )
        self.be = backend
        with backend.scope():
            p = {k: backend.array(v) for k, v in ctx.params.items()}
            self.batch = {"input": backend.array(ctx.x), "target": backend.array(ctx.t)}
        self.state = self.step.init(p)
        self.build_s = time.perf_counter() - t0
        self.sync = sync
        self.trainable = ctx.trainable

    def __call__(self) -> Any:
        r = self.step(self.state, self.batch)
        self.state = r.state
        self.sync(r.loss)
        return r.loss

    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(self.be.to_numpy(self.state.params[k])) for k in self.trainable}


class TorchRunner(Runner):
    def __init__(self, ctx: _Ctx, device: str, *, compiled: bool, sync: Callable[[], None]) -> None:
        import native_torch as NT
        import torch

        t0 = time.perf_counter()
        self.module = ctx.spec.torch_module().to(device)
        NT.load_params(self.module, ctx.params)
        self.module.train()
        step, self.opt = NT_.torch_step(self.module, ctx.spec.loss)
        self.fn = torch.compile(step) if compiled else step
        self.x = torch.as_tensor(ctx.x, device=device)
        self.t = torch.as_tensor(ctx.t, device=device)
        self.sync = sync
        self.build_s = time.perf_counter() - t0

    def __call__(self) -> Any:
        loss = self.fn(self.x, self.t)
        self.sync()
        return loss

    def params(self) -> dict[str, np.ndarray]:
        return {k: q.detach().float().cpu().numpy() for k, q in self.module.named_parameters()}


class JaxRunner(Runner):
    def __init__(self, ctx: _Ctx, device: Any) -> None:
        import jax

        t0 = time.perf_counter()
        step, tx = NT_.jax_step(ctx.spec.jax_forward(), ctx.spec.loss)
        self.step = step
        put = partial_put(jax, device)
        self.p = {k: put(ctx.params[k]) for k in ctx.trainable}
        self.s = {k: put(ctx.params[k]) for k in ctx.state_keys}
        self.opt_state = tx.init(self.p)
        self.x, self.t = put(ctx.x), put(ctx.t.astype(np.int32) if ctx.t.dtype == np.int64 else ctx.t)
        self.jax = jax
        self.build_s = time.perf_counter() - t0

    def __call__(self) -> Any:
        self.p, self.opt_state, self.s, loss = self.step(self.p, self.opt_state, self.s, self.x, self.t)
        self.jax.block_until_ready(loss)
        return loss

    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.p.items()}


def partial_put(jax: Any, device: Any) -> Callable[[np.ndarray], Any]:
    return lambda a: jax.device_put(np.array(a, copy=True), device)


class NumpyRunner(Runner):
    def __init__(self, ctx: _Ctx) -> None:
        s = ctx.spec
        t0 = time.perf_counter()
        self.step = NT_.NumpyStep(s.np_forward, s.np_backward, s.loss, ctx.params, ctx.trainable, ctx.x, ctx.t)
        self.build_s = time.perf_counter() - t0

    def __call__(self) -> Any:
        return self.step()

    def params(self) -> dict[str, np.ndarray]:
        return self.step.params()


# ------------------------------------------------------------------------------------------ groups
@dataclass
class Group:
    spec: TrainSpec
    family: str
    variants: list[Variant] = field(default_factory=list)
    runners: dict[str, Runner] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, runner: Runner, mem: str, framework: str, baseline: str | None = None) -> None:
        self.runners[name] = runner
        self.variants.append(Variant(name, runner, mem, framework, baseline=baseline))


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    keys = sorted(b)
    x = np.concatenate([np.asarray(a[k], dtype=np.float64).ravel() for k in keys])
    y = np.concatenate([np.asarray(b[k], dtype=np.float64).ravel() for k in keys])
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))


def verify(grp: Group, ctx: _Ctx, log: Callable[[str], None], tol: float = LOSS_TOL) -> None:
    """3 steps of every variant from the initial weights; losses compared with the group's first variant."""
    ref_name = grp.variants[0].name
    ref: tuple[list[float], dict[str, np.ndarray]] | None = None
    for v in grp.variants:
        r = grp.runners[v.name]
        losses = []
        for i in range(CHECK_STEPS):
            t0 = time.perf_counter()
            loss = r()
            if i == 0:
                v.info["first_step_s"] = time.perf_counter() - t0
            losses.append(float(np.asarray(loss.detach().cpu() if hasattr(loss, "detach") else loss)))
        params = r.params()
        if ref is None:
            ref = (losses, params)
            grp.checks[v.name] = {"losses": losses, "reference": None}
            if ctx.cross_ref is None:
                ctx.cross_ref = (f"{grp.family}:{v.framework}", losses)
            else:
                other, ol = ctx.cross_ref
                err = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(losses, ol))
                grp.checks[v.name].update(cross_reference=other, cross_rel_err=err)
            continue
        err = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(losses, ref[0]))
        perr = _rel(params, ref[1])
        ok = bool(np.isfinite(err) and err <= tol)
        grp.checks[v.name] = {
            "losses": losses,
            "reference": ref_name,
            "loss_rel_err": err,
            "param_rel_err": perr,
            "tolerance": tol,
            "ok": ok,
        }
        if not ok:
            msg = (
                f"CHECK FAILED: {v.framework}: losses of the first {CHECK_STEPS} steps {losses} differ from "
                f"{grp.variants[0].framework}'s {ref[0]} by {err:.2e} relative (> {tol})"
            )
            grp.notes.append(msg)
            log(f"train: {grp.spec.key} {grp.family}: {msg}")


def numpy_group(ctx: _Ctx) -> Group:
    import mithril as ml

    grp = Group(ctx.spec, "numpy")
    grp.add("native", NumpyRunner(ctx), "tracemalloc", "NumPy by hand + AdamW loop")
    grp.add(
        "mithril",
        MithrilRunner(ctx, ml.NumpyBackend(dtype=ml.float32), jit=False, sync=lambda x: None),
        "tracemalloc",
        "Mithril numpy",
        baseline="native",
    )
    return grp


def torch_group(ctx: _Ctx, device: str, jit: bool) -> Group:
    import torch
    import torch._dynamo

    import mithril as ml

    # a fresh dynamo state per group: what torch.compile learnt about the native step function of
    # another model (the same code object) would give dynamic-shape kernels
    torch._dynamo.reset()
    # a cold compile cache per group: "time to first step" is what a new user waits, not a rerun's cache hit
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-train-inductor-")
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    msync = (lambda x: torch.cuda.synchronize()) if cuda else (lambda x: None)
    mem = "cuda" if cuda else "rss"
    be = ml.TorchBackend(dtype=ml.float32, device=device)
    grp = Group(ctx.spec, "torch")
    grp.add("native", TorchRunner(ctx, device, compiled=False, sync=sync), mem, "torch.nn + torch.optim.AdamW eager")
    grp.add("mithril", MithrilRunner(ctx, be, jit=False, sync=msync), mem, "Mithril torch eager", baseline="native")
    if jit:
        grp.add("native-compile", TorchRunner(ctx, device, compiled=True, sync=sync), mem, "torch.compile(whole step)")
        grp.add(
            "mithril-jit",
            MithrilRunner(ctx, be, jit=True, sync=msync),
            mem,
            "Mithril torch jit=True (torch.compile)",
            baseline="native-compile",
        )
    return grp


def jax_group(ctx: _Ctx, device: str) -> Group:
    import jax

    import mithril as ml

    be = ml.JaxBackend(dtype=ml.float32, device=device)
    on_gpu = be.jax_device.platform != "cpu"
    mem = "jax-device" if on_gpu else "rss"
    grp = Group(ctx.spec, "jax")
    grp.add("native-jit", JaxRunner(ctx, be.jax_device), mem, "jax.jit(value_and_grad) + optax.adamw, donated")
    grp.add(
        "mithril-jit",
        MithrilRunner(ctx, be, jit=True, sync=jax.block_until_ready),
        mem,
        "Mithril jax jit=True",
        baseline="native-jit",
    )
    return grp


# ------------------------------------------------------------------------------------------ run
def run(
    level: str,
    *,
    device: str,
    families: Sequence[str],
    rounds: int,
    target_s: float,
    torch_jit_models: Sequence[str] | None,
    memory: bool,
    log: Callable[[str], None],
    gpt_cfg: M.GPTConfig | None = None,
    models: Sequence[str] | None = None,
    sink: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the train suite (one per variant); ``torch_jit_models``: keys (``prefix*``) that get the
    torch.compile variants (None: every model); ``models``: key prefixes to run (default all)."""
    from bench_runtime import _jax_device, _torch_device

    rows: list[dict[str, Any]] = []
    sink = sink or (lambda new: None)
    specs = train_specs(level, gpt_cfg)
    if models:
        specs = [s for s in specs if any(s.key.startswith(m.strip()) for m in models)]
    for spec in specs:
        ctx = _Ctx(spec)
        jit = torch_jit_models is None or any(
            spec.key == m or (m.endswith("*") and spec.key.startswith(m[:-1])) for m in torch_jit_models
        )
        for fam in families:
            if fam not in ("numpy", "torch", "jax"):
                continue
            if level == "smoke" and fam == "jax" and spec.key == "seed_cnn":
                log("train: seed_cnn jax skipped at --smoke (XLA compiles the convolution step for ~20 s)")
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    if fam == "numpy":
                        grp = numpy_group(ctx)
                    elif fam == "torch":
                        grp = torch_group(ctx, _torch_device(device), jit)
                    else:
                        grp = jax_group(ctx, _jax_device(device))
                    log(f"train: {spec.key} {fam}: {', '.join(v.name for v in grp.variants)}")
                    verify(grp, ctx, log, loss_tolerance(_torch_device(device)) if fam == "torch" else LOSS_TOL)
                    times = time_variants(grp.variants, rounds=rounds, target_s=target_s)
                    mems = {v.name: measure_memory(v) if memory else None for v in grp.variants}
            except Exception as e:
                log(f"train: {spec.key} {fam} FAILED: {type(e).__name__}: {e}")
                err = [
                    dict(
                        suite="train",
                        model=spec.key,
                        model_title=spec.title,
                        mode="step",
                        family=fam,
                        variant="error",
                        framework=fam,
                        error=f"{type(e).__name__}: {str(e)[:300]}",
                    )
                ]
                rows.extend(err)
                sink(err)
                continue
            new = _rows(grp, times, mems)
            for r in new:
                c = r["loss_check"]
                log(
                    f"    {r['variant']:<15} {r['time_s']['median'] * 1e3:10.3f} ms  first "
                    f"{(r['first_call_s'] or 0):7.2f} s  to first step {(r['first_step_total_s'] or 0):7.2f} s"
                    f" (x{r.get('first_step_ratio') or float('nan'):.2f})  ratio {r.get('ratio', {}).get('median', float('nan')):5.2f}"
                    f"  mem {r['peak_mem_bytes']} (x{r.get('peak_mem_ratio') or float('nan'):.2f})"
                    f"  loss err {c.get('loss_rel_err', float('nan')):.1e} param err "
                    f"{c.get('param_rel_err', float('nan')):.1e}  losses {[round(x, 6) for x in c['losses']]}"
                )
            rows.extend(new)
            sink(new)
            del grp
    return rows


def _first_step_total(grp: Group, name: str) -> float | None:
    """Time to first step: building the variant (compile_step and init; the module, optimizer and
    ``torch.compile`` wrapper; jit and optax setup) plus its first step, compilation included."""
    v = next(v for v in grp.variants if v.name == name)
    build, first = grp.runners[name].build_s, v.info.get("first_step_s")
    return None if build is None or first is None else build + first


def _rows(grp: Group, times: dict[str, list[float]], mems: dict[str, int | None]) -> list[dict[str, Any]]:
    out = []
    for v in grp.variants:
        st = Stats.of(times[v.name])
        chk = grp.checks.get(v.name, {})
        row: dict[str, Any] = dict(
            suite="train",
            model=grp.spec.key,
            model_title=grp.spec.title,
            mode="step",
            family=grp.family,
            variant=v.name,
            framework=v.framework,
            time_s=st.as_dict(),
            first_call_s=v.info.get("first_step_s", v.first_call_s),
            build_s=grp.runners[v.name].build_s,
            first_step_total_s=_first_step_total(grp, v.name),
            calls_per_round=v.info.get("calls_per_round"),
            peak_mem_bytes=mems.get(v.name),
            mem_method=v.mem_method,
            baseline=v.baseline,
            loss_check=chk,
            check_rel_err=chk.get("loss_rel_err"),
            check_ok=chk.get("ok"),
            notes=list(grp.notes) if v is grp.variants[0] else [],
        )
        if v.baseline and v.baseline in times:
            row["ratio"] = ratio_stats(times[v.name], times[v.baseline]).as_dict()
            row["ratio_of_medians"] = st.median / Stats.of(times[v.baseline]).median
            mine, theirs = _first_step_total(grp, v.name), _first_step_total(grp, v.baseline)
            if mine is not None and theirs:
                row["first_step_ratio"] = mine / theirs
            mb, mm = mems.get(v.baseline), mems.get(v.name)
            if mb and mm is not None:
                row["peak_mem_ratio"] = mm / mb
        row["steps_per_s"] = 1.0 / st.median
        if grp.spec.tokens:
            row["tokens_per_s"] = grp.spec.tokens / st.median
        out.append(row)
    return out
