"""Every registered loss against a formula written out independently here (numpy, loops),
its float64 gradients (gradcheck), and half-precision inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.distill.config import LossTerm, loss_names, loss_params
from edgekd.distill.feature_losses import FEATURE_LOSSES, FeatureLoss, LossInputs
from edgekd.distill.losses import LOSSES, Progress
from edgekd.distill.objective import DistillObjective
from edgekd.errors import ConfigError

RNG = np.random.default_rng(0)
S = RNG.normal(0, 2, (4, 5))
T = RNG.normal(0, 2, (4, 5))
Y = np.array([0, 3, 1, 4])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * np.log(p / q)).sum(axis=-1)


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def logit(name: str, s=S, t=T, y=Y, **params) -> float:
    return LOSSES.get(name)(t64(s), t64(t), torch.tensor(y), **params).item()


def test_registry_lists_every_method() -> None:
    assert loss_names() == ["at", "ce", "dist", "dkd", "fitnet", "js", "kd", "nkd", "ofa", "rkd", "rkl"]


@pytest.mark.parametrize("temp", [1.0, 3.0])
def test_reverse_kl(temp: float) -> None:
    want = kl(softmax(S / temp), softmax(T / temp)).mean() * temp**2
    assert logit("rkl", temperature=temp) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_jensen_shannon(temp: float) -> None:
    p, q = softmax(T / temp), softmax(S / temp)
    m = (p + q) / 2
    want = (0.5 * kl(p, m) + 0.5 * kl(q, m)).mean() * temp**2
    assert logit("js", temperature=temp) == pytest.approx(want, rel=1e-10)
    assert logit("js", s=S, t=S) == pytest.approx(0.0, abs=1e-12)
    assert logit("js", s=S * 50, t=-S * 50) <= np.log(2) + 1e-9  # bounded by log 2


def _dkd_reference(temp: float, alpha: float, beta: float) -> float:
    total = 0.0
    for s, t, y in zip(S, T, Y, strict=True):
        ps, pt = softmax(s / temp), softmax(t / temp)
        b_s, b_t = np.array([ps[y], 1 - ps[y]]), np.array([pt[y], 1 - pt[y]])
        rest = [k for k in range(len(s)) if k != y]
        q_s, q_t = ps[rest] / ps[rest].sum(), pt[rest] / pt[rest].sum()
        total += alpha * kl(b_t, b_s) + beta * kl(q_t, q_s)
    return total / len(S) * temp**2


@pytest.mark.parametrize(("temp", "alpha", "beta"), [(4.0, 1.0, 8.0), (1.0, 0.5, 2.0)])
def test_dkd(temp: float, alpha: float, beta: float) -> None:
    got = logit("dkd", temperature=temp, alpha=alpha, beta=beta)
    assert got == pytest.approx(_dkd_reference(temp, alpha, beta), rel=1e-9)
    quarter = logit("dkd", warmup_epochs=8, progress=Progress(2, 10))
    assert quarter == pytest.approx(0.25 * _dkd_reference(4.0, 1.0, 8.0), rel=1e-9)


def test_dkd_warmup_comes_from_the_progress() -> None:
    objective = DistillObjective([LossTerm("dkd", params={"warmup_epochs": 4})])
    args = (t64(S), t64(T), torch.tensor(Y), {}, {})
    full = _dkd_reference(4.0, 1.0, 8.0)
    assert objective(*args)[0].item() == pytest.approx(full, rel=1e-9)  # outside training: no ramp
    objective.progress = Progress(2, 10)
    assert objective(*args)[0].item() == pytest.approx(0.5 * full, rel=1e-9)
    objective.progress = Progress(9, 10)
    assert objective(*args)[0].item() == pytest.approx(full, rel=1e-9)
    # The paper's 20 warm-up epochs when the recipe names none.
    objective = DistillObjective([LossTerm("dkd")])
    objective.progress = Progress(5, 30)
    assert objective(*args)[0].item() == pytest.approx(0.25 * full, rel=1e-9)


@pytest.mark.parametrize(("temp", "gamma"), [(1.0, 1.5), (2.0, 1.0)])
def test_nkd(temp: float, gamma: float) -> None:
    total = 0.0
    for s, t, y in zip(S, T, Y, strict=True):
        rest = [k for k in range(len(s)) if k != y]
        target = -softmax(t)[y] * np.log(softmax(s)[y])
        q_t, q_s = softmax(t[rest] / temp), softmax(s[rest] / temp)
        total += target - gamma * temp**2 * (q_t * np.log(q_s)).sum()
    assert logit("nkd", temperature=temp, gamma=gamma) == pytest.approx(total / len(S), rel=1e-9)


@pytest.mark.parametrize(("temp", "beta", "gamma"), [(1.0, 1.0, 1.0), (4.0, 2.0, 0.5)])
def test_dist_pearson(temp: float, beta: float, gamma: float) -> None:
    ps, pt = softmax(S / temp), softmax(T / temp)
    inter = np.mean([1 - np.corrcoef(ps[i], pt[i])[0, 1] for i in range(len(S))])
    intra = np.mean([1 - np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(S.shape[1])])
    want = temp**2 * (beta * inter + gamma * intra)
    assert logit("dist", temperature=temp, beta=beta, gamma=gamma) == pytest.approx(want, rel=1e-6)


def _inputs(student_feats=(), teacher_feats=(), s=S, t=T) -> LossInputs:
    return LossInputs(t64(s), t64(t), torch.tensor(Y), list(student_feats), list(teacher_feats))


def test_ofa_on_logits_and_heads() -> None:
    def reference(s: np.ndarray, eps: float) -> float:
        total = 0.0
        for si, ti, y in zip(s, T, Y, strict=True):
            ps, pt = softmax(si), softmax(ti)
            w = pt.copy()
            w[y] = (1 + pt[y]) ** eps
            total += -(w * np.log(ps)).sum()
        return total / len(s)

    loss = FEATURE_LOSSES.get("ofa")(eps=1.5).double()
    feat = t64(RNG.normal(size=(4, 6)))
    loss.build([feat], [], num_classes=5)
    loss.eval()  # the head's output must be reproducible outside the module
    head_logits = loss.heads[0](feat).detach().numpy()
    got = loss(_inputs([feat])).item()
    assert got == pytest.approx(reference(S, 1.5) + reference(head_logits, 1.5), rel=1e-9)


def test_fitnet_projects_then_mse() -> None:
    f_s, f_t = RNG.normal(size=(4, 3, 8)), RNG.normal(size=(4, 5, 4))
    loss = FEATURE_LOSSES.get("fitnet")().double()
    loss.build([t64(f_s)], [t64(f_t)], num_classes=5)
    conv = loss.projectors[0]
    assert isinstance(conv, nn.Conv1d) and (conv.in_channels, conv.out_channels, conv.kernel_size) == (
        3,
        5,
        (1,),
    )
    w, b = conv.weight.detach().numpy()[:, :, 0], conv.bias.detach().numpy()
    projected = np.einsum("oc,ncl->nol", w, f_s) + b[None, :, None]
    pooled = projected.reshape(4, 5, 4, 2).mean(axis=3)  # 8 -> 4 positions, by average pooling
    want = ((pooled - f_t) ** 2).mean()
    assert loss(_inputs([t64(f_s)], [t64(f_t)])).item() == pytest.approx(want, rel=1e-9)


def test_fitnet_builds_linear_for_vectors_and_conv2d_for_maps() -> None:
    loss = FEATURE_LOSSES.get("fitnet")()
    loss.build([torch.zeros(2, 7), torch.zeros(2, 3, 4, 4)], [torch.zeros(2, 9), torch.zeros(2, 6, 2, 2)], 5)
    assert isinstance(loss.projectors[0], nn.Linear) and loss.projectors[0].out_features == 9
    assert isinstance(loss.projectors[1], nn.Conv2d) and loss.projectors[1].out_channels == 6
    value = loss(
        LossInputs(
            torch.zeros(2, 5),
            None,
            torch.zeros(2, dtype=torch.long),
            [torch.randn(2, 7), torch.randn(2, 3, 4, 4)],
            [torch.randn(2, 9), torch.randn(2, 6, 2, 2)],
        )
    )
    assert torch.isfinite(value)


def test_attention_transfer() -> None:
    f_s, f_t = RNG.normal(size=(4, 3, 6)), RNG.normal(size=(4, 7, 6))

    def at_map(f: np.ndarray) -> np.ndarray:
        a = (f**2).mean(axis=1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    want = ((at_map(f_s) - at_map(f_t)) ** 2).mean()
    loss = FEATURE_LOSSES.get("at")()
    assert loss(_inputs([t64(f_s)], [t64(f_t)])).item() == pytest.approx(want, rel=1e-9)


def _huber(d: np.ndarray) -> np.ndarray:
    a = np.abs(d)
    return np.where(a < 1, 0.5 * d**2, a - 0.5)


def test_rkd_distance_and_angle() -> None:
    e_s, e_t = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 6))

    def distances(e: np.ndarray) -> np.ndarray:
        d = np.array([[np.linalg.norm(a - b) for b in e] for a in e])
        return d / d[~np.eye(len(e), dtype=bool)].mean()

    def angles(e: np.ndarray) -> np.ndarray:
        out = np.zeros((len(e),) * 3)
        for a, b, c in itertools.product(range(len(e)), repeat=3):
            u, v = e[b] - e[a], e[c] - e[a]
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            out[a, b, c] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out

    want = 25 * _huber(distances(e_s) - distances(e_t)).mean() + 50 * _huber(angles(e_s) - angles(e_t)).mean()
    loss = FEATURE_LOSSES.get("rkd")()
    assert loss(_inputs([t64(e_s)], [t64(e_t)])).item() == pytest.approx(want, rel=1e-9)


LOGIT_CASES = [("rkl", {}), ("js", {"temperature": 2.0}), ("dkd", {}), ("nkd", {}), ("dist", {}), ("kd", {})]


@pytest.mark.parametrize(("name", "params"), LOGIT_CASES)
def test_logit_gradcheck(name: str, params: dict) -> None:
    y = torch.tensor(Y)
    assert torch.autograd.gradcheck(lambda s: LOSSES.get(name)(s, t64(T), y, **params), (t64(S, grad=True),))


@pytest.mark.parametrize("name", ["fitnet", "at", "rkd", "ofa"])
def test_feature_gradcheck(name: str) -> None:
    torch.manual_seed(0)
    f_s = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(4, 5, 6, dtype=torch.float64)
    loss = FEATURE_LOSSES.get(name)().double()
    loss.build([f_s.detach()], [f_t] if loss.needs_teacher_features else [], num_classes=5)
    loss.eval()

    def fn(f: torch.Tensor) -> torch.Tensor:
        return loss(_inputs([f], [f_t] if loss.needs_teacher_features else []))

    assert torch.autograd.gradcheck(fn, (f_s,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["rkl", "js", "dkd", "nkd", "dist"])
def test_half_precision_extreme_logits_stay_finite(name: str, dtype: torch.dtype) -> None:
    student = torch.tensor([[60000.0, -60000.0, 0.0], [-3.0e4, 3.0e4, 1.0]]).to(dtype).requires_grad_(True)
    teacher = torch.tensor([[-60000.0, 60000.0, 0.0], [3.0e4, -3.0e4, 1.0]]).to(dtype)
    loss = LOSSES.get(name)(student, teacher, torch.tensor([1, 0]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(student.grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["fitnet", "at", "rkd", "ofa"])
def test_feature_losses_take_half_features(name: str, dtype: torch.dtype) -> None:
    f_s, f_t = torch.randn(4, 3, 6).to(dtype), (torch.randn(4, 5, 6) * 100).to(dtype)
    loss = FEATURE_LOSSES.get(name)()
    loss.build([f_s.float()], [f_t.float()] if loss.needs_teacher_features else [], num_classes=5)
    inputs = LossInputs(
        torch.randn(4, 5).to(dtype), torch.randn(4, 5).to(dtype), torch.tensor(Y), [f_s], [f_t]
    )
    value = loss(inputs)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_logit_and_feature_losses_share_one_namespace() -> None:
    def at_logits(student_logits, teacher_logits, targets):  # would shadow the feature loss
        return student_logits.sum()

    with pytest.raises(ConfigError) as err:
        LOSSES.register("at", at_logits)
    line = err.value.one_line()
    assert "cannot register logit loss 'at'" in line and "taken by feature loss 'at'" in line, line
    assert "feature_losses.py" in line and "test_loss_registry.py" in line, line
    with pytest.raises(ConfigError, match="taken by logit loss 'kd'"):
        FEATURE_LOSSES.register("kd", FEATURE_LOSSES.get("at"))
    assert "at" not in LOSSES and "kd" not in FEATURE_LOSSES


def test_progress_reaches_every_term_that_declares_it() -> None:
    seen: list = []

    def logit_probe(student_logits, teacher_logits, targets, *, progress=None):
        seen.append(("logit", progress))
        return student_logits.sum() * 0

    def plain(student_logits, teacher_logits, targets):  # declares no progress: gets none
        return student_logits.sum() * 0

    class FeatureProbe(FeatureLoss):
        needs_teacher_features = False

        def forward(self, inputs: LossInputs) -> torch.Tensor:
            seen.append(("feature", inputs.progress))
            return inputs.student_logits.sum() * 0

    LOSSES.register("progress_probe", logit_probe)
    LOSSES.register("plain_probe", plain)
    FEATURE_LOSSES.register("feature_probe", FeatureProbe)
    try:
        assert "progress" not in loss_params("progress_probe")  # the loop's, not a recipe's
        terms = [
            LossTerm("progress_probe"),
            LossTerm("plain_probe"),
            LossTerm("feature_probe", student=["x"]),
        ]
        objective = DistillObjective(terms)
        objective.progress = Progress(3, 12)
        objective(t64(S), t64(T), torch.tensor(Y), {"x": t64(S)}, {})
    finally:
        LOSSES.unregister("progress_probe"), LOSSES.unregister("plain_probe")
        FEATURE_LOSSES.unregister("feature_probe")
    assert seen == [("logit", Progress(3, 12)), ("feature", Progress(3, 12))]
    assert Progress(3, 12).fraction == 0.25 and Progress(12, 12).fraction == 1.0
