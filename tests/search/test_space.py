"""Search candidates: families, the grid, architecture keys, labels, building, and the door."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
import torch

from edgekd.errors import ConfigError
from edgekd.models import count_params, create_model
from edgekd.search.space import FAMILIES, Candidate, SearchSpace, candidates

ONE_D = [name for name in FAMILIES if FAMILIES.get(name).inputs == "frames"]
TIMM = [name for name in FAMILIES if FAMILIES.get(name).model is None]
needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")


def test_key_is_the_sha256_of_the_canonical_json() -> None:
    # The latency cache and search.json of earlier runs rely on this exact text.
    candidate = Candidate.of("edgekd:resnet1d", {"width": 16, "blocks": [1, 1, 1]})
    text = '{"kwargs":{"blocks":[1,1,1],"width":16},"model":"edgekd:resnet1d"}'
    assert candidate.key() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert candidate.kwargs == (("blocks", (1, 1, 1)), ("width", 16))
    assert candidate.kwargs_dict() == {"blocks": [1, 1, 1], "width": 16}
    assert hash(candidate) == hash(Candidate.of("edgekd:resnet1d", {"blocks": (1, 1, 1), "width": 16}))
    assert candidate.key() != Candidate.of("edgekd:resnet1d", {"width": 16, "blocks": [1, 1, 2]}).key()
    assert candidate.label() == "resnet1d w16 b1-1-1"


def test_default_mobilenet1d_grid_in_order_with_labels() -> None:
    pool = candidates(SearchSpace())
    assert len(pool) == 5 * 3 * 1 * 2
    assert [c.label() for c in pool[:3]] == [
        "mobilenet1d w0.5 d0 k5 s1",
        "mobilenet1d w0.5 d0 k5 s2",
        "mobilenet1d w0.5 d1 k5 s1",
    ]
    assert pool[-1].label() == "mobilenet1d w2.0 d2 k5 s2"
    assert all(c.model == "edgekd:mobilenet1d" for c in pool)
    assert len({c.key() for c in pool}) == len(pool)
    assert [c.key() for c in candidates(SearchSpace())] == [c.key() for c in pool]


def test_grid_overrides_a_knob_fixed_goes_to_every_candidate_and_duplicates_collapse() -> None:
    space = SearchSpace(
        family="mobilenet1d",
        grid={"width_mult": [1, 1.0, 0.5], "depth": [2], "stem_stride": [1]},
        fixed={"dropout": 0.2},
    )
    pool = candidates(space)
    # 1 and 1.0 are one width: one architecture, one key.
    assert [c.label() for c in pool] == [
        "mobilenet1d w1.0 d2 k5 s1 dropout=0.2",
        "mobilenet1d w0.5 d2 k5 s1 dropout=0.2",
    ]
    assert pool[0].kwargs_dict() == {
        "depth": 2,
        "dropout": 0.2,
        "kernel_size": 5,
        "stem_stride": 1,
        "width_mult": 1.0,
    }


@pytest.mark.parametrize("family", ONE_D)
def test_every_default_candidate_of_a_1d_family_builds_and_runs(family: str) -> None:
    pool = candidates(SearchSpace(family=family))
    assert len(pool) >= 8
    sizes = set()
    for candidate in pool:
        model = candidate.build(num_classes=5, in_channels=2)
        assert model(torch.randn(2, 2, 64)).shape == (2, 5), candidate.label()
        sizes.add(count_params(model))
    assert len(sizes) >= 4  # the knobs change the networks


def test_mobilenet1d_depth_keeps_the_default_network_and_adds_stride1_blocks() -> None:
    default = create_model("mobilenet1d", 8)
    assert create_model("mobilenet1d", 8, depth=1).state_dict().keys() == default.state_dict().keys()
    # The original five blocks after the stem, under the same names (old checkpoints load).
    assert len(default.features) == 6 and count_params(default) == 20_816
    assert count_params(create_model("mobilenet1d", 8, width_mult=0.7)) == 9_872
    strides = {
        d: [b.depthwise[0].stride[0] for b in create_model("mobilenet1d", 8, depth=d).features[1:]]
        for d in (0, 2)
    }
    assert strides == {0: [1, 2, 2], 2: [1, 2, 1, 1, 2, 1, 1]}
    deep = create_model("mobilenet1d", 8, depth=2)
    assert deep(torch.randn(2, 2, 16)).shape == (2, 8) and count_params(deep) > count_params(default)
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigError, match="depth must be an integer >= 0"):
            create_model("mobilenet1d", 8, depth=bad)


@pytest.mark.parametrize(
    ("space", "text"),
    [
        (SearchSpace(family="mobilenet1"), "unknown family 'mobilenet1' (fix: did you mean 'mobilenet1d'?"),
        (
            SearchSpace(grid={"width": [1.0]}),
            "mobilenet1d has no knob 'width' (fix: did you mean 'width_mult'?",
        ),
        (SearchSpace(grid={"width_mul": [1.0]}), "did you mean 'width_mult'?"),
        (
            SearchSpace(grid={"depth": []}),
            "search.space.grid.depth must be a non-empty list of values, got []",
        ),
        (
            SearchSpace(grid={"depth": 2}),
            "must be a non-empty list of values, got 2 (fix: e.g. depth: [0, 1, 2]",
        ),
        (SearchSpace(grid={"depth": [1, -1]}), "grid.depth: every value must be an integer >= 0, got -1"),
        (
            SearchSpace(grid={"width_mult": [0]}),
            "grid.width_mult: every value must be a positive number, got 0",
        ),
        (SearchSpace(grid={"width_mult": [True]}), "every value must be a positive number, got True"),
        (SearchSpace(grid={"width_mult": [float("nan")]}), "every value must be a positive number, got nan"),
        (SearchSpace(family="resnet1d", grid={"blocks": [[2, 0]]}), "a non-empty list of positive integers"),
        (
            SearchSpace(grid={"depth": [1]}, fixed={"depth": 2}),
            "'depth' is both a grid knob and a fixed value",
        ),
        (SearchSpace(fixed={"dropout": {"p": 0.1}}), "search.space.fixed.dropout must be a number, string"),
        (SearchSpace(family="ghostnet", fixed={"variant": "ghostnet_050"}), "'variant' is both a grid knob"),
        (
            SearchSpace(family="resnet", grid={"variant": ["timm:resnet18"]}),
            "every value must be a timm model name",
        ),
    ],
)
def test_bad_space_is_one_line(space: SearchSpace, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        space.validate()
    assert text in info.value.one_line()
    with pytest.raises(ConfigError):
        candidates(space)


@needs_timm
def test_timm_default_variants_exist_and_an_unknown_one_is_refused() -> None:
    import timm

    for family in TIMM:
        for candidate in candidates(SearchSpace(family=family)):
            assert candidate.model.startswith("timm:") and timm.is_model(candidate.model[5:]), candidate
    with pytest.raises(ConfigError) as info:
        SearchSpace(family="mobilenetv3", grid={"variant": ["mobilenetv3_small_060"]}).validate()
    line = info.value.one_line()
    assert "timm has no model 'mobilenetv3_small_060'" in line and "did you mean 'mobilenetv3_small_" in line


@needs_timm
@pytest.mark.parametrize("family", TIMM)
def test_a_timm_family_runs_on_small_synthetic_images(family: str) -> None:
    first = candidates(SearchSpace(family=family))[0]
    assert first.label() == first.model[5:]
    torch.manual_seed(0)
    model = first.build(num_classes=4, in_channels=3)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    gray = first.build(num_classes=4, in_channels=1).eval()
    with torch.no_grad():
        assert torch.isfinite(gray(torch.rand(2, 1, 64, 64))).all()
