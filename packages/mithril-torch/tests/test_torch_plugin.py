"""The plugin module, its hook and the kernel table's coverage of the core primitives."""

from __future__ import annotations

import importlib

import pluggy

import mithril_torch
from mithril.plugins import hookspecs
from mithril.primitives import CORE_PRIMITIVES
from mithril_torch import TorchBackend
from mithril_torch import plugin as torch_plugin

TEST_MODULES = (
    "test_torch_kernels_elementwise",
    "test_torch_kernels_structure",
    "test_torch_kernels_reductions",
    "test_torch_kernels_nn",
    "test_torch_kernels_indexing",
)


def test_plugin_declares_the_api_version():
    assert torch_plugin.MITHRIL_PLUGIN_API == hookspecs.PLUGIN_API == 1


def test_hook_registers_the_backend():
    registered: list[tuple[object, object]] = []
    torch_plugin.mithril_register_backends(register=lambda ref, name=None: registered.append((ref, name)))
    assert registered == [("mithril_torch.backend:TorchBackend", "torch")]  # lazy: imported on first use
    module, _, attr = registered[0][0].partition(":")
    assert getattr(importlib.import_module(module), attr) is TorchBackend


def test_plugin_works_through_pluggy():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(torch_plugin, name="torch")
    registered: list[tuple[object, object]] = []
    pm.hook.mithril_register_backends(register=lambda ref, name=None: registered.append((ref, name)))
    assert registered == [("mithril_torch.backend:TorchBackend", "torch")]  # lazy: imported on first use
    module, _, attr = registered[0][0].partition(":")
    assert getattr(importlib.import_module(module), attr) is TorchBackend


def test_version():
    assert mithril_torch.__version__ == "0.1.0"


def test_a_kernel_for_every_core_primitive():
    table = TorchBackend().core_kernels()
    missing = sorted(set(CORE_PRIMITIVES) - set(table))
    assert not missing, f"no torch kernel for {missing}"
    assert all(callable(k) for k in table.values())


def test_every_core_primitive_is_tested_against_an_oracle():
    covered: set[str] = set()
    for name in TEST_MODULES:
        covered.update(importlib.import_module(name).COVERED)
    assert sorted(set(CORE_PRIMITIVES) - covered) == []
