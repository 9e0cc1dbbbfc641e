"""Symbolic shapes: unification, variadics, constraints and rollback."""

import itertools

import pytest

from mithril.errors import ShapeMismatchError
from mithril.shapes.symbolic import Dim, SymShape, Variadic, transaction, unify


def test_unify_binds_symbols_both_ways():
    n = Dim()
    a = SymShape([n, 3])
    b = SymShape([5, None])
    unify(a, b)
    assert a.concrete() == (5, 3) and b.concrete() == (5, 3) and n.known == 5


def test_variadic_takes_the_middle():
    v = Variadic()
    a = SymShape([2], v, [7])
    unify(a, SymShape([2, 3, 4, 7]))
    assert SymShape([], v, []).concrete() == (3, 4)


def test_two_variadics_with_extra_dims_on_opposite_sides():
    va, vb = Variadic(), Variadic()
    a = SymShape([], va, [4])  # [..., 4]
    b = SymShape([2], vb, [])  # [2, ...]
    unify(a, b)
    unify(a, SymShape([2, 9, 4]))
    assert b.concrete() == (2, 9, 4)
    assert SymShape([], vb, []).concrete() == (9, 4)


def test_rank_and_value_mismatch_are_reported():
    with pytest.raises(ShapeMismatchError, match="rank"):
        unify(SymShape([1, 2]), SymShape([1, 2, 3]))
    with pytest.raises(ShapeMismatchError, match="3 != 4"):
        unify(SymShape([3]), SymShape([4]))


def test_failed_transaction_rolls_back():
    n = Dim()
    a = SymShape([n, 2])
    with pytest.raises(ShapeMismatchError), transaction():
        unify(a, SymShape([7, 2]))
        unify(a, SymShape([7, 3]))
    assert n.known is None


def test_shape_cannot_contain_itself():
    v = Variadic()
    with pytest.raises(ShapeMismatchError, match="itself"):
        unify(SymShape([], v, []), SymShape([1], v, []))


def test_long_chains_stay_fast():
    # path compression: 20k merged symbols resolve without deep walks
    dims = [Dim() for _ in range(20000)]
    for a, b in itertools.pairwise(dims):
        unify(SymShape([a]), SymShape([b]))
    unify(SymShape([dims[-1]]), SymShape([11]))
    assert all(d.known == 11 for d in dims[::997])
