"""Meta-tests of the conventions every public op follows (dm_pix style): a flat, explicit `__all__`
of documented, type-hinted functions from private modules, arrays first and options keyword-only,
and `key` (never `rng`) for randomness."""

from __future__ import annotations

import inspect
import types

import pytest
from jax import lax

from dfn_jax import ops

PUBLIC = sorted(ops.__all__)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def test_all_is_explicit_sorted_and_unique():
    assert ops.__doc__ and ops.__doc__.strip()
    assert list(ops.__all__) == sorted(set(ops.__all__)), "`__all__` should be sorted, no repeats"
    for name in ops.__all__:
        assert hasattr(ops, name), f"`{name}` is in `__all__` but not defined"


def test_every_public_function_is_listed():
    exported = {
        name
        for name, value in vars(ops).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, types.ModuleType)
    }
    assert exported <= set(ops.__all__), (
        f"public but missing from `__all__`: {exported - set(ops.__all__)}"
    )


@pytest.mark.parametrize("name", PUBLIC)
def test_is_a_documented_function_from_a_private_module(name):
    fn = getattr(ops, name)
    assert callable(fn)
    doc = inspect.getdoc(fn)
    assert doc and doc.strip(), f"`{name}` has no docstring"
    module = fn.__module__.split(".")
    assert module[:2] == ["dfn_jax", "ops"] and module[-1].startswith("_"), fn.__module__


# Drop-ins for a `jax.lax` function keep its signature (flax calls them positionally), plus
# keyword-only options of their own.
LAX_DROP_INS = {"conv_general_dilated": lax.conv_general_dilated}


@pytest.mark.parametrize("name", sorted(LAX_DROP_INS))
def test_lax_drop_ins_keep_the_lax_signature(name):
    ours = inspect.signature(getattr(ops, name)).parameters
    theirs = inspect.signature(LAX_DROP_INS[name]).parameters
    assert [(p.name, p.kind) for p in list(ours.values())[: len(theirs)]] == [
        (p.name, p.kind) for p in theirs.values()
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(ours.values())[len(theirs) :])


@pytest.mark.parametrize("name", sorted(set(PUBLIC) - set(LAX_DROP_INS)))
def test_arrays_first_options_keyword_only(name):
    parameters = list(inspect.signature(getattr(ops, name)).parameters.values())
    positional = [p for p in parameters if p.kind in _POSITIONAL]
    assert len(positional) <= 2, f"`{name}`: at most two positional (array) parameters"
    assert parameters[: len(positional)] == positional, f"`{name}`: positional parameters first"
    for p in positional:
        assert p.default is inspect.Parameter.empty, (
            f"`{name}`: `{p.name}` has a default, so it is an option and must be keyword-only"
        )
    for p in parameters[len(positional) :]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, (
            f"`{name}`: `{p.name}` must be keyword-only"
        )
    assert not [p for p in parameters if p.kind in _VARIADIC], f"`{name}` takes *args/**kwargs"


@pytest.mark.parametrize("name", PUBLIC)
def test_random_keys_are_called_key(name):
    for parameter in inspect.signature(getattr(ops, name)).parameters:
        assert "rng" not in parameter.lower(), f"`{name}`: call `{parameter}` `key`"


@pytest.mark.parametrize("name", PUBLIC)
def test_type_hints(name):
    signature = inspect.signature(getattr(ops, name))
    assert signature.return_annotation is not inspect.Signature.empty, f"`{name}` return type"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, (
            f"`{name}`: `{parameter.name}` has no type hint"
        )
