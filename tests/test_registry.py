from __future__ import annotations

import pytest

from edgekd.errors import ConfigError
from edgekd.registry import Registry


def test_register_get_and_suggest():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1 and reg.get("beta") is beta
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg
    with pytest.raises(ConfigError) as err:
        reg.get("alpah")
    assert "unknown widget 'alpah'" in err.value.message
    assert "did you mean 'alpha'" in err.value.one_line()
    assert reg.unregister("beta") is beta and reg.names() == ["alpha"]
    with pytest.raises(ConfigError, match="unknown widget 'beta'"):
        reg.unregister("beta")
    reg.register("beta", 3)  # a removed name is free again


def test_a_taken_name_is_refused_naming_both_places():
    reg: Registry[object] = Registry("thing")
    first = object()
    reg.register("x", first)
    with pytest.raises(ConfigError) as err:
        reg.register("x", object())
    line = err.value.one_line()
    assert "cannot register thing 'x'" in line and "taken by thing 'x'" in line, line
    assert reg.get("x") is first  # the refused object did not replace it


def test_the_same_definition_may_register_again():
    reg: Registry[object] = Registry("thing")
    obj = object()
    assert reg.register("x", obj) is obj and reg.register("x", obj) is obj

    def define():  # a module run again (importlib.reload): a new function of the same name
        def widget():
            return 1

        return widget

    reg.register("w", define())
    again = define()
    reg.register("w", again)
    assert reg.get("w") is again


def test_a_function_of_another_name_is_refused():
    reg: Registry[object] = Registry("thing")

    def one():
        return 1

    def two():
        return 2

    reg.register("f", one)
    with pytest.raises(ConfigError, match=r"test_registry\.py"):  # where both come from
        reg.register("f", two)


def test_registries_of_one_namespace_refuse_each_others_names():
    functions: Registry[object] = Registry("logit loss")
    classes: Registry[object] = Registry("feature loss", shares_names_with=functions)
    other: Registry[object] = Registry("backend")
    classes.register("at", int)
    with pytest.raises(ConfigError) as err:
        functions.register("at", str)
    assert "cannot register logit loss 'at'" in err.value.one_line()
    assert "taken by feature loss 'at'" in err.value.one_line()
    with pytest.raises(ConfigError, match="taken by feature loss"):
        functions.register("at", int)  # even the same object: one name, one meaning
    other.register("at", str)  # another namespace
    functions.register("kd", len)
    assert functions.namespace_names() == classes.namespace_names() == ["at", "kd"]
    assert "at" not in functions and functions.names() == ["kd"]
