"""``edgekd.losses``: the public nn.Module losses equal the registered ones, train in a plain
PyTorch loop, keep gradients out of the teacher, and tap features by path on any model."""

from __future__ import annotations

import inspect
from collections import OrderedDict

import pytest
import torch
from torch import nn

import edgekd.losses as public
from edgekd.distill.config import loss_params
from edgekd.distill.feature_losses import FEATURE_LOSSES, LossInputs
from edgekd.distill.losses import LOSSES, Progress, kd_divergence
from edgekd.errors import ConfigError, ShapeError

CLASSES = {obj.name: obj for obj in map(public.__dict__.get, public.__all__) if hasattr(obj, "name")}
# Where the public default differs from the recipe's, on purpose (documented in the class).
OWN_DEFAULTS = {("kd", "alpha"): 1.0}  # the soft term alone, to add to the user's own CE


def _logits(seed: int = 0, n: int = 6, k: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    s, t = torch.randn(n, k, generator=gen) * 3, torch.randn(n, k, generator=gen) * 3
    return s, t, torch.randint(0, k, (n,), generator=gen)


def test_every_registered_loss_has_a_public_class() -> None:
    assert set(CLASSES) == set(LOSSES.names()) | set(FEATURE_LOSSES.names())
    assert all(getattr(public, name).__doc__ for name in public.__all__)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_public_defaults_are_the_recipe_defaults(name: str) -> None:
    recipe = loss_params(name)
    signature = inspect.signature(CLASSES[name].__init__).parameters
    defaults = {key: p.default for key, p in signature.items() if key != "self"}
    assert set(defaults) <= set(recipe)
    assert defaults == {key: OWN_DEFAULTS.get((name, key), recipe[key]) for key in defaults}
    # The classes that cover every recipe parameter: ce drops the teacher's, which it ignores.
    assert set(defaults) == set(recipe) or name == "ce"


LOGIT_CASES = [
    ("kd", {"temperature": 2.5, "alpha": 0.3}),
    ("rkl", {"temperature": 1.7}),
    ("js", {"temperature": 3.0}),
    ("dkd", {"temperature": 2.0, "alpha": 0.5, "beta": 3.0, "warmup_epochs": 4}),
    ("nkd", {"temperature": 2.0, "gamma": 0.7}),
    ("dist", {"temperature": 3.0, "beta": 2.0, "gamma": 0.5}),
]


@pytest.mark.parametrize(("name", "params"), LOGIT_CASES)
def test_logit_class_equals_the_registered_function(name: str, params: dict) -> None:
    s, t, y = _logits()
    want = LOSSES.get(name)(s, t, y, **params)
    torch.testing.assert_close(CLASSES[name](**params)(s, t, y), want, rtol=0, atol=0)


def test_kd_without_targets_is_the_soft_term_and_ce_takes_no_teacher() -> None:
    s, t, y = _logits(1)
    torch.testing.assert_close(public.KD(temperature=3.0)(s, t), kd_divergence(s, t, 3.0), rtol=0, atol=0)
    torch.testing.assert_close(public.KD(3.0)(s, t, y), LOSSES.get("kd")(s, t, y, temperature=3.0, alpha=1.0))
    want = LOSSES.get("ce")(s, None, y, label_smoothing=0.2)
    torch.testing.assert_close(public.CE(label_smoothing=0.2)(s, y), want, rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"KD\(alpha=0.7\) mixes in the label cross-entropy"):
        public.KD(alpha=0.7)(s, t)


def test_dkd_epoch_of_epochs_is_the_training_progress() -> None:
    s, t, y = _logits(2)
    dkd = public.DKD(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20)
    for epoch in (1, 3, 20, 25):
        want = LOSSES.get("dkd")(s, t, y, progress=Progress(epoch, 30))
        torch.testing.assert_close(dkd(s, t, y, epoch=epoch, epochs=30), want, rtol=0, atol=0)
    torch.testing.assert_close(dkd(s, t, y, epoch=5, epochs=30), dkd(s, t, y) / 4)  # 5 / 20 of the way
    with pytest.raises(ConfigError, match="epoch 0 of 30") as info:
        dkd(s, t, y, epoch=0, epochs=30)  # a 0-based loop would zero the first epoch's loss
    assert "pass epoch + 1" in info.value.one_line()
    with pytest.raises(ConfigError, match="together"):
        dkd(s, t, y, epoch=3)


def _pair(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(6, 3, 8, generator=gen), torch.randn(6, 5, 4, generator=gen)
    return student, teacher


@pytest.mark.parametrize(
    ("name", "params"),
    [("fitnet", {}), ("at", {"p": 3.0}), ("rkd", {"distance_weight": 2.0, "angle_weight": 3.0})],
)
def test_paired_feature_class_equals_the_registered_module(name: str, params: dict) -> None:
    f_s, f_t = _pair(name)
    loss = CLASSES[name](**params)
    got = loss(f_s, f_t)
    internal = FEATURE_LOSSES.get(name)(**params)
    internal.build([f_s], [f_t], num_classes=0)
    internal.load_state_dict(loss.loss.state_dict())  # FitNet: the same projector
    want = internal(LossInputs(torch.empty(0), None, torch.empty(0), [f_s], [f_t]))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(loss([f_s], [f_t]), want, rtol=0, atol=0)  # a list of one is the same


def test_ofa_class_equals_the_registered_module() -> None:
    s, t, y = _logits(3)
    stage = torch.randn(6, 3, 8)
    ofa = public.OFA(temperature=2.0, eps=1.5).eval()
    got = ofa(s, t, y, stage)
    assert not ofa.loss.heads[0].training  # heads built after .eval() follow it
    internal = FEATURE_LOSSES.get("ofa")(temperature=2.0, eps=1.5)
    internal.build([stage], [], num_classes=5)
    internal.load_state_dict(ofa.loss.state_dict())
    want = internal.eval()(LossInputs(s, t, y, [stage], []))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_build_from_shapes_makes_the_layers_of_the_first_call() -> None:
    f_s, f_t = _pair("fitnet")
    lazy, eager = public.FitNet(), public.FitNet().build([(32, 3, 8)], [(32, 5, 4)], dtype=torch.float64)
    assert not list(lazy.parameters()) and lazy.built is False
    lazy(f_s, f_t)
    assert [p.shape for p in lazy.parameters()] == [p.shape for p in eager.parameters()]
    assert all(p.dtype == torch.float64 for p in eager.parameters())
    heads = public.OFA().build([torch.randn(2, 7), (2, 3, 4, 4)], num_classes=5)
    assert [type(h[0]) for h in heads.loss.heads] == [nn.Linear, nn.Conv2d]
    assert public.FitNet().build((1, 7), (1, 9)).loss.projectors[0].out_features == 9  # one shape


def test_features_unlike_the_built_ones_are_one_line_errors() -> None:
    f_s, f_t = _pair("fitnet")
    fitnet = public.FitNet().build([tuple(f_s.shape)], [tuple(f_t.shape)])
    with pytest.raises(ShapeError, match=r"built for student features \[N, 3, 8\], got \[N, 4, 8\]"):
        fitnet(torch.randn(6, 4, 8), f_t)
    with pytest.raises(ShapeError, match="1 student and 2 teacher features"):
        fitnet([f_s], [f_t, f_t])
    with pytest.raises(ConfigError, match="teacher features must be a tensor or a non-empty list"):
        public.RKD()(f_s, [])
    s, t, y = _logits()
    with pytest.raises(ShapeError, match=r"targets must be \[6\] int64 class indices"):
        public.NKD()(s, t, y.float())
    with pytest.raises(ConfigError, match="needs the targets"):
        public.DKD()(s, t)
    with pytest.raises(ConfigError, match=r"KD: temperature must be a number > 0, got 0"):
        public.KD(temperature=0)


def _inputs_for(name: str, student: dict, teacher: dict) -> tuple:
    """The call arguments of loss ``name`` from leaf tensors that record gradients."""
    if name == "ce":
        return student["logits"], student["targets"]
    if name == "ofa":
        return student["logits"], teacher["logits"], student["targets"], student["features"]
    if name in FEATURE_LOSSES:
        return student["features"], teacher["features"]
    return student["logits"], teacher["logits"], student["targets"]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_gradients_reach_the_student_only(name: str) -> None:
    s, t, y = _logits(4)
    f_s, f_t = _pair(name, seed=4)
    student = {"logits": s.requires_grad_(), "features": f_s.requires_grad_(), "targets": y}
    teacher = {"logits": t.requires_grad_(), "features": f_t.requires_grad_()}
    CLASSES[name]()(*_inputs_for(name, student, teacher)).backward()
    assert teacher["logits"].grad is None and teacher["features"].grad is None
    grads = [student[k].grad for k in ("logits", "features") if student[k].grad is not None]
    assert grads and all(g.abs().sum() > 0 for g in grads)


def test_kd_plus_fitnet_in_a_plain_loop_trains_student_and_projector() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    student = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    x = torch.randn(64, 8)
    kd, fitnet = public.KD(temperature=4.0), public.FitNet()
    losses = []
    # The teacher's graph is kept on purpose: the losses must still not send gradients into it.
    with public.taps(student, "1") as s_taps, public.taps(teacher, ["1"]) as t_taps:
        teacher(x[:2])
        student(x[:2])
        fitnet(s_taps.collect(), t_taps.collect())  # builds the projector before the optimizer
        projector = fitnet.loss.projectors[0].weight
        before = projector.detach().clone()
        optimizer = torch.optim.Adam([*student.parameters(), *fitnet.parameters()], lr=0.02)
        assert any(p is projector for group in optimizer.param_groups for p in group["params"])
        for _ in range(20):
            t_logits, s_logits = teacher(x), student(x)
            loss = kd(s_logits, t_logits) + fitnet(s_taps.collect(), t_taps.collect())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(projector, before)
    assert all(p.grad is None for p in teacher.parameters())
    assert not student[1]._forward_hooks and not teacher[1]._forward_hooks  # taps removed


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        return self.act(self.conv(x)), "extras"  # a block may return a tuple


def _nested() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.ModuleDict(
                {"stem": nn.Conv1d(2, 4, 1), "blocks": nn.ModuleList([_Block(4), _Block(4)])}
            )
            self.head = nn.Sequential(
                OrderedDict(pool=nn.AdaptiveAvgPool1d(1), flat=nn.Flatten(1), fc=nn.Linear(4, 3))
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.encoder["stem"](x)
            for block in self.encoder["blocks"]:
                x, _ = block(x)
            return self.head(x)

    torch.manual_seed(0)
    return Net()


def test_taps_by_path_on_a_nested_model() -> None:
    net, x = _nested(), torch.randn(2, 2, 16)
    with public.taps(net, ["encoder.blocks.1.conv", "encoder.stem", "head.fc"]) as t:
        logits = net(x)
        conv, stem, fc = t.collect()
    torch.testing.assert_close(stem, net.encoder["stem"](x))
    torch.testing.assert_close(fc, logits)
    assert conv.shape == (2, 4, 16)
    with public.taps(net, "encoder.blocks.0") as t:  # a tuple output gives its first tensor
        net(x)
        (block,) = t.collect()
    assert block.shape == (2, 4, 16)


def test_a_bad_path_is_one_line_with_a_suggestion_and_hooks_nothing() -> None:
    net = _nested()
    with pytest.raises(ConfigError) as info:
        public.taps(net, ["head.fc", "encoder.block.1.conv"])
    line = info.value.one_line()
    assert "\n" not in line and "model has no module 'encoder.block.1.conv'" in line
    assert "did you mean 'encoder.blocks.1.conv'" in line
    assert not net.head.fc._forward_hooks  # the good path was not hooked either
