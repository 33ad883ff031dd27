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


def test_collision_is_loud():
    reg: Registry[object] = Registry("thing")
    reg.register("x", object())
    with pytest.warns(UserWarning, match="registered twice"):
        reg.register("x", object())
