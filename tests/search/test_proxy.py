"""The DisWOT-style proxy and Kendall's tau-b, on real frames and real networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgekd.errors import ConfigError, ShapeError
from edgekd.search.proxy import ProxyScore, class_activations, kendall_tau, proxy_scores
from edgekd.search.space import Candidate

K = 4


def _frames(n: int = 48, length: int = 128, seed: int = 0) -> torch.Tensor:
    """IQ tones whose frequency is the class, in noise: [n, 2, length]."""
    g = torch.Generator().manual_seed(seed)
    freq = ((torch.arange(n) % K) + 1).float() * 0.04
    phase = torch.rand(n, generator=g)[:, None] * 2 * math.pi
    angle = 2 * math.pi * freq[:, None] * torch.arange(length) + phase
    return torch.stack([angle.cos(), angle.sin()], 1) + 0.3 * torch.randn(n, 2, length, generator=g)


def _mobilenet(**kwargs: object) -> Candidate:
    return Candidate.of("edgekd:mobilenet1d", {"width_mult": 0.75, "depth": 1, "stem_stride": 1, **kwargs})


def _teacher_like(candidate: Candidate, frames: torch.Tensor, seed: int = 0) -> nn.Module:
    """The candidate's own network at the same initialisation, as a teacher: its BatchNorm
    statistics set from ``frames`` (what training leaves), then in eval mode."""
    torch.manual_seed(seed)
    model = candidate.build(K, 2)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one pass gives this batch's statistics
    with torch.no_grad():
        model.train()(frames)
    return model.eval()


POOL = [
    _mobilenet(),
    _mobilenet(depth=0),
    _mobilenet(stem_stride=2),
    _mobilenet(width_mult=0.5),
    Candidate.of("edgekd:cnn1d_small", {"width": 8}),
]


def test_a_student_identical_to_the_teacher_scores_best_at_distance_zero() -> None:
    frames = _frames()
    teacher = _teacher_like(POOL[0], frames)
    with torch.no_grad():
        assert len(teacher(frames).argmax(1).unique()) >= 2  # the class relation is not empty
    scores = proxy_scores(teacher, POOL, frames, K, 2)
    assert set(scores) == {c.key() for c in POOL}
    best = max(POOL, key=lambda c: scores[c.key()].score)
    assert best == POOL[0]
    # Students run with batch statistics: they then see what the calibrated teacher sees.
    assert scores[POOL[0].key()].sample_relation < 1e-4 and scores[POOL[0].key()].class_relation < 1e-4
    others = [scores[c.key()] for c in POOL[1:]]
    assert min(s.sample_relation for s in others) > 0.01
    assert all(s.score == pytest.approx(-(s.class_relation + s.sample_relation)) for s in others)
    assert all(0 <= s.sample_relation <= 4 and 0 <= s.class_relation <= 4 for s in others)


def test_with_a_teacher_that_tells_the_classes_apart_the_class_relation_counts() -> None:
    # An untrained teacher predicts one or two classes, where the (centred) class relation is
    # the same for every network; a trained one predicts all four.
    frames, labels = _frames(), torch.arange(48) % K
    torch.manual_seed(0)
    teacher = Candidate.of("edgekd:cnn1d_small", {"width": 8}).build(K, 2)
    optimiser = torch.optim.Adam(teacher.parameters(), lr=0.02)
    for _ in range(25):
        optimiser.zero_grad()
        F.cross_entropy(teacher(frames), labels).backward()
        optimiser.step()
    with torch.no_grad():
        assert torch.equal(teacher.eval()(frames).argmax(1), labels)
    scores = proxy_scores(teacher, POOL, frames, K, 2)
    klass = [scores[c.key()].class_relation for c in POOL]
    assert min(klass) > 1e-3 and max(klass) > 2 * min(klass)
    assert all(s.score == -(s.class_relation + s.sample_relation) for s in scores.values())


def test_scores_are_reproducible_and_leave_the_global_rng_alone() -> None:
    frames = _frames()
    teacher = _teacher_like(POOL[0], frames, seed=1)
    state = torch.random.get_rng_state()
    first = proxy_scores(teacher, POOL, frames, K, 2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert proxy_scores(teacher, POOL, frames, K, 2, seed=3) == first
    assert proxy_scores(teacher, POOL, frames, K, 2, seed=4) != first  # the seed is the weights'
    assert teacher.training is False
    assert first[POOL[1].key()].to_dict() == {
        "score": first[POOL[1].key()].score,
        "class_relation": first[POOL[1].key()].class_relation,
        "sample_relation": first[POOL[1].key()].sample_relation,
    }


def test_dropout_is_off_in_the_students() -> None:
    frames = _frames()
    teacher = _teacher_like(POOL[0], frames)
    plain, dropped = _mobilenet(depth=0), _mobilenet(depth=0, dropout=0.5)
    scores = proxy_scores(teacher, [plain, dropped], frames, K, 2)
    assert scores[plain.key()] == scores[dropped.key()]


def test_class_activations_are_the_classifier_gradient_at_uniform_predictions() -> None:
    g = torch.Generator().manual_seed(0)
    features, labels = (
        torch.randn(10, 6, generator=g, dtype=torch.float64),
        torch.tensor([0, 1, 2, 2, 1, 0, 0, 3, 3, 1]),
    )
    head = nn.Linear(6, K).double()
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)  # softmax 1/K everywhere
    F.cross_entropy(head(features), labels).backward()
    torch.testing.assert_close(class_activations(features, labels, K), head.weight.grad)


def test_a_black_box_teacher_is_compared_through_its_logits(tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from edgekd.models.onnx_teacher import OnnxTeacher

    frames = _frames()
    teacher = _teacher_like(POOL[0], frames)
    path = tmp_path / "teacher.onnx"
    torch.onnx.export(
        teacher, (frames[:2],), str(path), input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    through_onnx = proxy_scores(OnnxTeacher(path), POOL, frames, K, 2)
    # A plain function has no modules to hook either: its logits are the features too.
    through_logits = proxy_scores(lambda x: teacher(x), POOL, frames, K, 2)
    through_features = proxy_scores(teacher, POOL, frames, K, 2)
    for c in POOL:
        assert through_onnx[c.key()].score == pytest.approx(through_logits[c.key()].score, abs=1e-4)
    assert through_logits[POOL[1].key()] != through_features[POOL[1].key()]


@pytest.mark.parametrize(
    ("frames", "error", "text"),
    [
        (torch.randn(8, 3, 64), ShapeError, "frames have 3 channels, the models take 2"),
        (
            torch.randn(1, 2, 64),
            ConfigError,
            "needs at least 2 frames, got 1 (fix: raise search.proxy_frames",
        ),
        (torch.randn(8, 128), ShapeError, "frames must be a float tensor [N, C, ...], got (8, 128)"),
        (torch.full((8, 2, 64), float("nan")), ShapeError, "the frames hold NaN or infinite values"),
    ],
)
def test_bad_frames_are_one_line(frames: torch.Tensor, error: type, text: str) -> None:
    teacher = _mobilenet().build(K, 2).eval()
    with pytest.raises(error) as info:
        proxy_scores(teacher, POOL[:1], frames, K, 2)
    assert text in info.value.one_line()


def test_a_teacher_of_another_class_count_or_a_bad_candidate_is_named() -> None:
    frames = _frames(n=8)
    with pytest.raises(
        ShapeError, match=r"the teacher gave \(8, 5\) for frames \(8, 2, 128\), not logits \[N, 4\]"
    ):
        proxy_scores(_mobilenet().build(5, 2).eval(), POOL[:1], frames, K, 2)
    teacher = _mobilenet().build(K, 2).eval()
    with pytest.raises(
        ConfigError, match=r"candidate mobilenet1d w0\.75 d-1 k5 s1: .*depth must be an integer >= 0"
    ):
        proxy_scores(
            teacher,
            [
                Candidate.of(
                    "edgekd:mobilenet1d",
                    {"width_mult": 0.75, "depth": -1, "kernel_size": 5, "stem_stride": 1},
                )
            ],
            frames,
            K,
            2,
        )


def test_a_candidate_that_cannot_run_on_the_frames_is_named() -> None:
    pytest.importorskip("timm", reason="timm is not installed")
    teacher = _mobilenet().build(K, 2).eval()
    with pytest.raises(ShapeError) as info:
        proxy_scores(teacher, [Candidate.of("timm:resnet10t")], _frames(n=8), K, 2)
    line = info.value.one_line()
    assert line.startswith("search proxy: candidate resnet10t cannot run on frames (8, 2, 128):")
    assert "\n" not in line


def test_kendall_tau_b_by_hand_with_ties() -> None:
    # Pairs: 3 concordant, 1 discordant, one tied in x only, one tied in y only:
    # tau_b = (3 - 1) / sqrt((6 - 1) * (6 - 1)) = 0.4.
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, float("nan")], [3, 2, 1, 0]) == -1.0  # the NaN pair is left out
    assert kendall_tau([1], [2]) is None
    assert kendall_tau([], []) is None
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None  # no variance
    with pytest.raises(ValueError, match="lengths 2 and 3"):
        kendall_tau([1, 2], [1, 2, 3])


def test_kendall_tau_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    g = torch.Generator().manual_seed(0)
    for n in (2, 5, 17, 40):
        x = torch.randint(0, 5, (n,), generator=g).tolist()  # many ties
        y = torch.randn(n, generator=g).round(decimals=1).tolist()
        expected = stats.kendalltau(x, y, variant="b").statistic
        got = kendall_tau(x, y)
        assert (got is None) == math.isnan(expected)
        if got is not None:
            assert got == pytest.approx(expected, abs=1e-12)


def test_proxy_score_to_dict() -> None:
    assert ProxyScore(-1.5, 0.5, 1.0).to_dict() == {
        "score": -1.5,
        "class_relation": 0.5,
        "sample_relation": 1.0,
    }
