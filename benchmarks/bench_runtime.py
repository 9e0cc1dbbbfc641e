"""Suite ``runtime``: Mithril's physical models against hand-written native code, same run.

For each model and mode, one *group* of variants is timed interleaved (see
:mod:`harness`): Mithril on a backend and the native code it is compared with.

What one call does (the unit that is timed):

* ``forward``: Mithril ``pm.evaluate(params, inputs)`` in training mode (the CNN's
  BatchNorm uses batch statistics). Native: the same forward (torch under
  ``torch.no_grad()`` with the module in ``train()`` mode; JAX ``jax.jit(f)``;
  NumPy by hand).
* ``train``: Mithril ``pm.evaluate(params, inputs, {"output": g})`` -> outputs and
  the gradients of every param, where ``g = 2 (y - t) / y.size`` (the gradient of
  ``mean((y - t)**2)``) was computed once, outside the timed call, from a forward
  pass. Native: forward, the MSE loss and its gradient, backward to every param's
  gradient (torch: ``loss.backward()``, then the ``.grad`` tensors are returned and
  detached from the params, as Mithril returns its gradients; JAX
  ``jax.jit(jax.value_and_grad(loss))``; NumPy: forward, ``g``, hand-written backward).
  The native side thus also computes the loss and ``g`` (a few element-wise ops on
  the output), which Mithril's API takes as an input.

Every array is float32; results end with a device synchronisation
(``torch.cuda.synchronize``, ``jax.block_until_ready``).
Each group also checks that Mithril and native agree (relative L2 error of
the output, and of all gradients concatenated).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import models as M
import numpy as np
from harness import Stats, Variant, bench_threads, measure_memory, ratio_stats, time_variants


@dataclass(frozen=True)
class ModelSpec:
    key: str
    title: str
    build: Callable[[], Any]
    input_shape: tuple[int, ...]
    np_forward: Callable[..., Any] | None  # (p, x) -> (y, cache)
    np_backward: Callable[..., Any] | None  # (p, cache, g) -> grads
    torch_module: Callable[[], Any]
    jax_fn: Callable[[], Any]
    tokens: int | None = None  # for GPT: batch * seq (tokens per call)
    ggml: bool = True


def model_specs(level: str, gpt_cfg: M.GPTConfig | None = None) -> list[ModelSpec]:
    import native_jax as NJ
    import native_numpy as NN
    import native_torch as NT

    if level == "smoke":
        deep = (3, 64, 16)
        cnn_batch = 4
        cfg = gpt_cfg or M.GPTConfig(n_layers=1, d_model=64, n_heads=4, seq_len=16, vocab=64)
    else:
        deep = (10, 1024, 64) if level == "quick" else (10, 2048, 128)
        cnn_batch = 32
        cfg = gpt_cfg or M.GPTConfig(n_layers=2 if level == "quick" else 12)
    n, w, b = deep
    skip_deep = level == "smoke"  # the seed MLP covers the same code paths

    def gpt_spec(cfg: M.GPTConfig) -> ModelSpec:
        title = f"GPT {cfg.n_layers}L d={cfg.d_model} h={cfg.n_heads} T={cfg.seq_len} B={cfg.batch}"
        return ModelSpec(
            f"gpt{cfg.n_layers}",
            title,
            lambda: M.gpt(cfg),
            tuple(M.gpt_input_shape(cfg)),
            lambda p, x: NN.gpt_forward(cfg, p, x),
            lambda p, c, g: NN.gpt_backward(cfg, p, c, g),
            lambda: NT.GPT(cfg),
            lambda: NJ.gpt(cfg),
            tokens=cfg.batch * cfg.seq_len,
        )

    # the full CPU run also has a 2-layer GPT: torch.compile of the 12-layer training step takes minutes
    small_gpt = [gpt_spec(M.GPTConfig(n_layers=2))] if level == "full" and gpt_cfg is None else []
    specs = [
        ModelSpec(
            "seed_mlp",
            "seed MLP 20-64-10, B=32",
            M.seed_mlp,
            (32, 20),
            lambda p, x: NN.mlp_forward(p, x, 2),
            lambda p, c, g: NN.mlp_backward(p, c, g, 2)[0],
            NT.SeedMLP,
            lambda: NJ.seed_mlp,
        ),
        ModelSpec(
            f"mlp{n}x{w}",
            f"MLP {n}x{w}, B={b}",
            lambda: M.deep_mlp(n, w),
            (b, w),
            lambda p, x: NN.mlp_forward(p, x, n),
            lambda p, c, g: NN.mlp_backward(p, c, g, n)[0],
            lambda: NT.DeepMLP(n, w),
            lambda: NJ.deep_mlp(n),
        ),
        ModelSpec(
            "seed_cnn",
            f"seed CNN (BatchNorm training), B={cnn_batch}",
            M.seed_cnn,
            (cnn_batch, 3, 32, 32),
            NN.cnn_forward,
            NN.cnn_backward,
            NT.SeedCNN,
            lambda: NJ.seed_cnn,
        ),
        *small_gpt,
        gpt_spec(cfg),
    ]
    return [s for s in specs if not (skip_deep and s.key.startswith(f"mlp{n}x"))]


@dataclass
class Group:
    """One timed group: a model, a mode, a backend family and its variants."""

    spec: ModelSpec
    mode: str  # forward | train
    family: str  # numpy | torch | jax
    variants: list[Variant] = field(default_factory=list)
    check: dict[str, float] = field(default_factory=dict)  # variant -> relative error vs native
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, Callable[[], None]]] = field(default_factory=list)  # (variant, fn): after timing

    def run_checks(self) -> None:
        for name, c in self.checks:
            try:
                c()
            except Exception as e:
                self.notes.append(f"{name}: check failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")


def _rel(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    x = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in a])
    y = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in b])
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-30))


class _Ctx:
    """Shared data of one model: NumPy params, input, target and output gradient."""

    def __init__(self, spec: ModelSpec, seed: int = 0) -> None:
        import mithril as ml

        self.spec = spec
        self.model = spec.build()
        be = ml.NumpyBackend(dtype=ml.float32)
        pm = ml.compile(self.model, be, shapes={"input": list(spec.input_shape)})
        self.params = pm.randomize_params(seed=seed)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal(spec.input_shape).astype(np.float32)
        y = pm.evaluate(self.params, {"input": self.x})["output"]
        self.t = rng.standard_normal(y.shape).astype(np.float32)
        self.g = (2.0 * (y - self.t) / y.size).astype(np.float32)
        self.trainable = list(pm.param_keys)
        self.numpy_pm = pm


# ------------------------------------------------------------------------------------------ numpy
def numpy_group(ctx: _Ctx, mode: str) -> Group:
    spec = ctx.spec
    grp = Group(spec, mode, "numpy")
    pm = ctx.numpy_pm
    p, x, g, t = ctx.params, ctx.x, ctx.g, ctx.t
    inputs = {"input": x}
    if mode == "forward":

        def m_fn():
            return pm.evaluate(p, inputs)
    else:

        def m_fn():
            return pm.evaluate(p, inputs, {"output": g})

    grp.variants.append(Variant("mithril", m_fn, "tracemalloc", "Mithril numpy", baseline="native"))
    if spec.np_forward is not None:
        fwd, bwd = spec.np_forward, spec.np_backward

        def n_fwd() -> Any:
            return fwd(p, x)[0]

        def n_train() -> Any:
            y, cache = fwd(p, x)
            gg = 2.0 * (y - t) / y.size
            return y, bwd(p, cache, gg.astype(np.float32))

        grp.variants.append(Variant("native", n_fwd if mode == "forward" else n_train, "tracemalloc", "NumPy by hand"))

        def check() -> None:
            if mode == "forward":
                grp.check["mithril"] = _rel([m_fn()["output"]], [n_fwd()])
            else:
                _, mg = m_fn()
                _, ng = n_train()
                keys = sorted(mg)
                grp.check["mithril"] = _rel([mg[k] for k in keys], [ng[k] for k in keys])

        grp.checks.append(("mithril", check))
    return grp


# ------------------------------------------------------------------------------------------ torch
def torch_group(ctx: _Ctx, mode: str, device: str, jit: bool, ggml: bool) -> Group:
    import native_torch as NT
    import torch

    import mithril as ml

    spec = ctx.spec
    grp = Group(spec, mode, "torch")
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    mem = "cuda" if cuda else "rss"
    be = ml.TorchBackend(dtype=ml.float32, device=device)
    p = {k: be.array(v) for k, v in ctx.params.items()}
    x, g = be.array(ctx.x), be.array(ctx.g)
    t = torch.as_tensor(ctx.t, device=x.device)
    inputs = {"input": x}
    shapes = {"input": list(spec.input_shape)}

    def mithril_fn(pm: Any) -> Callable[[], Any]:
        if mode == "forward":

            def f() -> Any:
                out = pm.evaluate(p, inputs)
                sync()
                return out
        else:

            def f() -> Any:
                out = pm.evaluate(p, inputs, {"output": g})
                sync()
                return out

        return f

    module = spec.torch_module().to(x.device)
    NT.load_params(module, ctx.params)
    module.train()
    params = list(module.parameters())

    def native_fn(mod: Any) -> Callable[[], Any]:
        if mode == "forward":

            def f() -> Any:
                with torch.no_grad():
                    y = mod(x)
                sync()
                return y
        else:

            def f() -> Any:
                y = mod(x)
                d = y - t
                loss = (d * d).mean()
                loss.backward()
                grads = [q.grad for q in params]
                for q in params:  # hand the gradients over, as Mithril returns them
                    q.grad = None
                sync()
                return y, grads

        return f

    pm = ml.compile(ctx.model, be, shapes=shapes)
    grp.variants.append(Variant("mithril", mithril_fn(pm), mem, "Mithril torch eager", baseline="native"))
    grp.variants.append(Variant("native", native_fn(module), mem, "torch.nn eager"))
    if mode == "train":
        try:
            be_ad = ml.TorchBackend(dtype=ml.float32, device=device, autodiff="torch")
            pm_ad = ml.compile(ctx.model, be_ad, shapes=shapes)
            grp.variants.append(
                Variant(
                    "mithril-autograd",
                    mithril_fn(pm_ad),
                    mem,
                    "Mithril torch eager, autodiff='torch'",
                    baseline="native",
                )
            )
        except TypeError:  # a mithril-torch without the option
            pass
    if jit:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        pmj = ml.compile(ctx.model, be, shapes=shapes, jit=True)
        compiled = torch.compile(module)
        grp.variants.append(
            Variant(
                "mithril-jit", mithril_fn(pmj), mem, "Mithril torch jit=True (torch.compile)", baseline="native-compile"
            )
        )
        grp.variants.append(Variant("native-compile", native_fn(compiled), mem, "torch.compile(nn.Module)"))
        if mode == "train":
            be_adj = ml.TorchBackend(dtype=ml.float32, device=device, autodiff="torch")
            pm_adj = ml.compile(ctx.model, be_adj, shapes=shapes, jit=True)
            grp.variants.append(
                Variant(
                    "mithril-jit-autograd",
                    mithril_fn(pm_adj),
                    mem,
                    "Mithril torch jit=True, autodiff='torch'",
                    baseline="native-compile",
                )
            )
    if ggml and mode == "forward" and not cuda and spec.ggml:
        try:
            gbe = ml.GGMLBackend(n_threads=bench_threads())
            gpm = ml.compile(ctx.model, gbe, shapes=shapes)
            gp = dict(ctx.params)
            gin = {"input": ctx.x}
            grp.variants.append(
                Variant("mithril-ggml", lambda: gpm.evaluate(gp, gin), "rss", "Mithril GGML float32", baseline="native")
            )
        except Exception as e:
            grp.notes.append(f"GGML forward not run: {type(e).__name__}: {str(e).splitlines()[0][:160]}")

    # agreement with the native module (after warm-up, before timing)
    def to_np(a: Any) -> np.ndarray:
        return a.detach().float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    def check(v: Variant) -> None:
        if mode == "forward":
            with torch.no_grad():
                ref = to_np(module(x))
            out = v.fn()["output"]
            grp.check[v.name] = _rel([to_np(out)], [ref])
        else:
            for q in params:
                q.grad = None
            module(x).backward(g)
            ref = {k: to_np(q.grad) for k, q in module.named_parameters()}
            _, grads = v.fn()
            keys = sorted(grads)
            grp.check[v.name] = _rel([to_np(grads[k]) for k in keys], [ref[k] for k in keys])

    for v in grp.variants:
        if not v.name.startswith("native"):
            grp.checks.append((v.name, lambda v=v: check(v)))
    return grp


# ------------------------------------------------------------------------------------------ jax
def jax_group(ctx: _Ctx, mode: str, device: str) -> Group:
    import jax
    import native_jax as NJ

    import mithril as ml

    spec = ctx.spec
    grp = Group(spec, mode, "jax")
    be = ml.JaxBackend(dtype=ml.float32, device=device)
    on_gpu = be.jax_device.platform != "cpu"
    mem = "jax-device" if on_gpu else "rss"
    with be.scope():
        p = {k: be.array(v) for k, v in ctx.params.items()}
        x, g, t = be.array(ctx.x), be.array(ctx.g), be.array(ctx.t)
    inputs = {"input": x}
    pm = ml.compile(ctx.model, be, shapes={"input": list(spec.input_shape)}, jit=True)
    if mode == "forward":

        def m_fn():
            return jax.block_until_ready(pm.evaluate(p, inputs))
    else:

        def m_fn():
            return jax.block_until_ready(pm.evaluate(p, inputs, {"output": g}))

    fwd = spec.jax_fn()
    trainable = {k: p[k] for k in ctx.trainable}
    if mode == "forward":
        jf = jax.jit(fwd)

        def n_fn():
            return jax.block_until_ready(jf(p, x))
    else:
        vg = NJ.mse_value_and_grad(fwd)

        def n_fn():
            return jax.block_until_ready(vg(trainable, x, t))

    grp.variants.append(Variant("mithril-jit", m_fn, mem, "Mithril jax jit=True", baseline="native-jit"))
    label = "jax.jit(f)" if mode == "forward" else "jax.jit(jax.value_and_grad(loss))"
    grp.variants.append(Variant("native-jit", n_fn, mem, label))
    if mode == "train":
        try:
            be_ad = ml.JaxBackend(dtype=ml.float32, device=device, autodiff="jax")
        except TypeError:  # a mithril-jax without the option
            be_ad = None
        if be_ad is not None:
            pm_ad = ml.compile(ctx.model, be_ad, shapes={"input": list(spec.input_shape)}, jit=True)

            def ad_fn():
                return jax.block_until_ready(pm_ad.evaluate(p, inputs, {"output": g}))

            grp.variants.append(
                Variant(
                    "mithril-jit-autodiff", ad_fn, mem, "Mithril jax jit=True, autodiff='jax'", baseline="native-jit"
                )
            )

    def check(v: Variant) -> None:
        if mode == "forward":
            grp.check[v.name] = _rel([np.asarray(v.fn()["output"])], [np.asarray(n_fn())])
        else:
            _, grads = v.fn()
            _, vjp = jax.vjp(lambda q: fwd(q, x), trainable)
            (ref,) = vjp(g)
            keys = sorted(grads)
            grp.check[v.name] = _rel([np.asarray(grads[k]) for k in keys], [np.asarray(ref[k]) for k in keys])

    for v in grp.variants:
        if not v.name.startswith("native"):
            grp.checks.append((v.name, lambda v=v: check(v)))
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
    """Rows of the runtime suite (one per variant); ``models``: key prefixes to run (default all).

    ``sink`` receives the rows of each group as soon as it is measured (for partial results).
    """
    rows: list[dict[str, Any]] = []
    sink = sink or (lambda new: None)
    specs = model_specs(level, gpt_cfg)
    if models:
        specs = [s for s in specs if any(s.key.startswith(m.strip()) for m in models)]
    for spec in specs:
        ctx = _Ctx(spec)
        for mode in ("forward", "train"):
            for fam in families:
                jit = torch_jit_models is None or any(
                    spec.key == m or (m.endswith("*") and spec.key.startswith(m[:-1])) for m in torch_jit_models
                )
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        if fam == "numpy":
                            grp = numpy_group(ctx, mode)
                        elif fam == "torch":
                            grp = torch_group(ctx, mode, _torch_device(device), jit, ggml="ggml" in families)
                        elif fam == "jax":
                            grp = jax_group(ctx, mode, _jax_device(device))
                        else:
                            continue
                        log(f"runtime: {spec.key} {mode} {fam}: {', '.join(v.name for v in grp.variants)}")
                        times = time_variants(grp.variants, rounds=rounds, target_s=target_s)
                        mems = {v.name: measure_memory(v) if memory else None for v in grp.variants}
                        grp.run_checks()
                except Exception as e:
                    log(f"runtime: {spec.key} {mode} {fam} FAILED: {type(e).__name__}: {e}")
                    err = [
                        dict(
                            suite="runtime",
                            model=spec.key,
                            model_title=spec.title,
                            mode=mode,
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
                    log(
                        f"    {r['variant']:<15} {r['time_s']['median'] * 1e3:10.3f} ms  first "
                        f"{(r['first_call_s'] or 0):7.2f} s  ratio {r.get('ratio', {}).get('median', float('nan')):5.2f}"
                        f"  mem {r['peak_mem_bytes']}  check {r['check_rel_err']}"
                    )
                rows.extend(new)
                sink(new)
                del grp
    return rows


def _torch_device(device: str) -> str:
    return "cuda" + device[3:] if device.startswith("gpu") else device


def _jax_device(device: str) -> str:
    return {"cuda": "gpu"}.get(device.split(":")[0], device.split(":")[0]) + (
        f":{device.split(':')[1]}" if ":" in device else ""
    )


def _rows(grp: Group, times: dict[str, list[float]], mems: dict[str, int | None]) -> list[dict[str, Any]]:
    out = []
    for v in grp.variants:
        st = Stats.of(times[v.name])
        row: dict[str, Any] = dict(
            suite="runtime",
            model=grp.spec.key,
            model_title=grp.spec.title,
            mode=grp.mode,
            family=grp.family,
            variant=v.name,
            framework=v.framework,
            time_s=st.as_dict(),
            first_call_s=v.first_call_s,
            calls_per_round=v.info.get("calls_per_round"),
            peak_mem_bytes=mems.get(v.name),
            mem_method=v.mem_method,
            baseline=v.baseline,
            check_rel_err=grp.check.get(v.name),
            notes=list(grp.notes) if v is grp.variants[0] else [],
        )
        if v.baseline and v.baseline in times:
            row["ratio"] = ratio_stats(times[v.name], times[v.baseline]).as_dict()
            row["ratio_of_medians"] = st.median / Stats.of(times[v.baseline]).median
        if grp.spec.tokens and grp.mode == "train":
            row["tokens_per_s"] = grp.spec.tokens / st.median
        out.append(row)
    return out
