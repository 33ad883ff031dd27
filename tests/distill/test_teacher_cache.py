"""The on-disk teacher-logit cache: keys, reuse, storage error, views, damaged files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config import from_dict
from edgekd.distill import teacher_cache as tc
from edgekd.distill.augment import augment_frames, check_augmentable
from edgekd.distill.config import AugmentConfig, KDConfig, TrainConfig
from edgekd.distill.train import distill
from edgekd.errors import ConfigError
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

AUGMENT = AugmentConfig(time_shift=8, phase_rotation=True, views=3, seed=5)


def _teacher(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet1d", 4, width=8, blocks=[1, 1, 1]).eval()  # safe: nn.Module.eval()


def _cache(teacher, x, cache_dir, augment=AUGMENT, lines=None, **kd) -> tc.CachedLogits:
    log = lines.append if lines is not None else None
    return tc.teacher_logits_cache(
        teacher, x, 4, augment, from_dict(KDConfig, kd), cache_dir=cache_dir, batch_size=64, log=log
    )


def _files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("teacher-logits-*.pt"))


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return tone_dataset(96, seed=0).x


def test_cache_is_reused_and_rebuilt_when_teacher_data_or_transform_change(tmp_path, frames) -> None:
    teacher = _teacher()
    lines: list[str] = []
    first = _cache(teacher, frames, tmp_path, lines=lines)
    [path] = _files(tmp_path)
    assert path.with_name(path.name + ".json").is_file()  # manifest beside it
    written = path.read_bytes()
    again = _cache(teacher, frames, tmp_path, lines=lines)  # another epoch, run or student
    assert path.read_bytes() == written and len(_files(tmp_path)) == 1  # reused, not rewritten
    assert sum("computing" in line for line in lines) == 1 and any("reusing" in line for line in lines)
    assert torch.equal(first.values, again.values)

    changed_teacher = _teacher()
    with torch.no_grad():
        next(changed_teacher.parameters()).view(-1)[0] += 1e-3  # one weight of thousands
    changed_data = frames.copy()
    changed_data[7, 0, 3] += 1e-3
    variants = [
        (changed_teacher, frames, AUGMENT, {}),
        (teacher, changed_data, AUGMENT, {}),
        (teacher, frames, dataclasses.replace(AUGMENT, time_shift=4), {}),
        (teacher, frames, dataclasses.replace(AUGMENT, seed=6), {}),
        (teacher, frames, AUGMENT, {"cache_storage": "topk", "cache_topk": 2}),
    ]
    for i, (t, x, aug, kd) in enumerate(variants, start=2):
        _cache(t, x, tmp_path, aug, **kd)
        assert len(_files(tmp_path)) == i, f"variant {i - 1} did not get its own cache"


def test_least_recently_used_caches_go_when_the_folder_is_over_its_size(tmp_path, frames) -> None:
    a, b, c = _teacher(0), _teacher(1), _teacher(2)
    _cache(a, frames, tmp_path)
    _cache(b, frames, tmp_path)
    [first, second] = sorted(_files(tmp_path), key=lambda p: p.stat().st_mtime_ns)
    size = first.stat().st_size
    # Make the order unambiguous on coarse file clocks: b's cache older than a's.
    os.utime(second, (1_000_000, 1_000_000))
    os.utime(first, (2_000_000, 2_000_000))
    _cache(a, frames, tmp_path)  # reusing a's cache makes it the most recently used
    assert first.stat().st_mtime > 2_000_000
    # Room for two caches: writing c's deletes b's (least recently used) with its manifest.
    lines: list[str] = []
    _cache(c, frames, tmp_path, lines=lines, cache_max_gib=(2.5 * size) / 2**30)
    assert second not in _files(tmp_path) and not second.with_name(second.name + ".json").exists()
    assert first in _files(tmp_path) and len(_files(tmp_path)) == 2
    assert any("deleted" in line and second.name in line for line in lines)
    # Under the cap nothing goes; null keeps everything.
    _cache(b, frames, tmp_path, cache_max_gib=None)
    assert len(_files(tmp_path)) == 3


def test_cache_size_cap_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="cache_max_gib"):
        from_dict(KDConfig, {"cache_max_gib": 0}).validate()


def test_fp16_storage_error_is_within_half_precision(frames) -> None:
    teacher = _teacher()
    exact = (
        torch.cat(
            [
                torch.as_tensor(teacher(augment_frames(torch.from_numpy(frames), np.arange(96), v, AUGMENT)))
                for v in range(3)
            ]
        )
        .detach()
        .reshape(3, 96, 4)
        * 40
    )  # wide range of magnitudes
    stored = tc.compress_logits(exact, "fp16", 0)
    assert stored.values.dtype == torch.float16
    for view in range(3):
        error = (stored.dense(view) - exact[view]).abs()
        assert (error <= exact[view].abs() * 2.0**-11 + 1e-6).all()


def test_topk_keeps_the_top_classes_and_spreads_the_remaining_mass(frames) -> None:
    logits = torch.randn(2, 500, 10, generator=torch.Generator().manual_seed(0)) * 3
    k = 3
    stored = tc.compress_logits(logits, "topk", k)
    assert stored.indices.dtype == torch.int16 and stored.values.shape == (2, 500, k)
    for view in range(2):
        p_true = F.softmax(logits[view], dim=1)
        p_back = F.softmax(stored.dense(view), dim=1)
        top = logits[view].topk(k, dim=1).indices
        # The top-k probabilities survive (to fp16 rounding of their logits)...
        torch.testing.assert_close(p_back.gather(1, top), p_true.gather(1, top), atol=2e-3, rtol=2e-3)
        # ...and every other class gets an equal share of the true remaining mass.
        rest_true = 1 - p_true.gather(1, top).sum(1)
        others = p_back.scatter(1, top, 0.0)
        torch.testing.assert_close(others.sum(1), rest_true, atol=2e-3, rtol=2e-3)
        share = others.max(1).values
        assert torch.allclose(share, rest_true / (10 - k), atol=2e-3)
        # Total variation to the true distribution is at most the remaining mass.
        tv = 0.5 * (p_back - p_true).abs().sum(1)
        assert (tv <= rest_true + 2e-3).all()
    with pytest.raises(ConfigError, match="keeps every one of the 10 classes"):
        tc.compress_logits(logits, "topk", 10)


def test_fp16_overflow_and_nonfinite_teacher_logits_are_refused() -> None:
    with pytest.raises(ConfigError, match="beyond fp16's range"):
        tc.compress_logits(torch.tensor([[[1e6, 0.0]]]), "fp16", 0)
    with pytest.raises(ConfigError, match="NaN or infinite logits for 1 training frame"):
        tc.compress_logits(torch.tensor([[[float("nan"), 0.0], [1.0, 2.0]]]), "fp16", 0)


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "other_key"])
def test_a_damaged_cache_file_is_reported_and_rebuilt(tmp_path, frames, damage) -> None:
    teacher = _teacher()
    good = _cache(teacher, frames, tmp_path)
    [path] = _files(tmp_path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
        reason = "unreadable"
    elif damage == "flip":
        # Flip one byte inside the stored logits (the tensor data comes last in the zip).
        offset = raw.rfind(good.values.numpy().tobytes()[:64])
        assert offset > 0
        path.write_bytes(raw[:offset] + bytes([raw[offset] ^ 0x40]) + raw[offset + 1 :])
        reason = "corrupt"
    elif damage == "foreign":
        torch.save({"format": "something else"}, path)
        reason = "not an edgekd teacher cache"
    else:
        other = _cache(_teacher(seed=1), frames, tmp_path)  # another teacher's cache under this name
        assert not torch.equal(other.values, good.values)
        other_path = next(p for p in _files(tmp_path) if p != path)
        path.write_bytes(other_path.read_bytes())
        reason = "key does not match"
    lines: list[str] = []
    rebuilt = _cache(teacher, frames, tmp_path, lines=lines)
    assert any("unusable" in line and reason in line and "rebuilding" in line for line in lines), lines
    assert torch.equal(rebuilt.values, good.values)
    assert torch.equal(tc.load_cache(path, _key(teacher, frames), 3, 96, 4).values, good.values)


def _key(teacher, frames) -> str:
    return tc.cache_key(tc.teacher_digest(teacher), tc.data_digest(frames), AUGMENT, "fp16", 5)


def test_student_sees_the_view_whose_logits_the_cache_returns(monkeypatch, tmp_path) -> None:
    train, val = tone_dataset(128, seed=0), tone_dataset(32, seed=1)
    teacher = _teacher()
    with torch.no_grad():
        teacher.head[-1].weight.mul_(30)  # logits of a confident teacher: views differ clearly
    lookups: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    real_lookup = tc.CachedLogits.lookup

    def spy(self, idx, view, device):
        logits = real_lookup(self, idx, view, device)
        other_view = real_lookup(self, idx, (view + 1) % self.views, device)
        lookups.append((view, logits, other_view))
        return logits

    monkeypatch.setattr(tc.CachedLogits, "lookup", spy)
    torch.manual_seed(1)
    student = create_model("cnn1d_small", 4, width=4)
    inputs: list[torch.Tensor] = []

    def record(module, args):
        if module.training:
            inputs.append(args[0].detach().clone())

    student.register_forward_pre_hook(record)
    cfg = TrainConfig(epochs=4, batch_size=32, device="cpu", augment=AUGMENT)
    distill(student, teacher, train, val, cfg, KDConfig(), out_dir=tmp_path)
    assert len(lookups) == len(inputs) == 16  # 4 epochs x 4 steps
    assert [v for v, _, _ in lookups] == [0] * 4 + [1] * 4 + [2] * 4 + [0] * 4  # epoch e: (e - 1) % 3
    with torch.no_grad():
        for (_view, cached, other_view), x in zip(lookups, inputs, strict=True):
            exact = teacher(x)  # the teacher on the very batch the student trained on
            tol = 2.0**-10 * float(exact.abs().max()) + 1e-5  # fp16 rounding
            assert (cached - exact).abs().max() <= tol
            assert (other_view - exact).abs().max() > 10 * tol  # another view would not match


def test_cached_kd_trains_like_online_kd_under_augmentation() -> None:
    tones = tone_dataset(192, seed=0), tone_dataset(32, seed=1)
    teacher = _teacher()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=5e-3, device="cpu", augment=AUGMENT)
    weights, losses = [], []
    for cache in (False, True):
        torch.manual_seed(2)
        student = create_model("cnn1d_small", 4, width=4)
        result = distill(student, teacher, *tones, cfg, KDConfig(cache_teacher=cache))
        weights.append(student.state_dict())
        losses.append([h["train_loss"] for h in result.history])
    # Same views, same batches: only the fp16 rounding of the cached logits differs.
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    for key, value in weights[0].items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(weights[1][key], value, atol=2e-3, rtol=1e-2)


def test_feature_terms_run_the_teacher_per_batch_and_say_so(tones, tmp_path) -> None:
    kd = from_dict(
        KDConfig,
        {"terms": [{"name": "kd"}, {"name": "fitnet", "student": ["features.1"], "teacher": ["stages.0"]}]},
    )
    lines: list[str] = []
    cfg = TrainConfig(epochs=1, batch_size=128, device="cpu")
    distill(
        create_model("cnn1d_small", 4, width=4),
        _teacher(),
        *tones,
        cfg,
        kd,
        log=lines.append,
        out_dir=tmp_path,
    )
    assert any("teacher cache: not used" in line for line in lines)
    assert any("teacher run per batch" in line for line in lines)
    assert not (tmp_path / "teacher_cache").exists()


def test_cache_dir_setting_is_shared_by_two_students(tones, tmp_path) -> None:
    shared = tmp_path / "shared"
    kd = from_dict(KDConfig, {"cache_dir": str(shared)})
    cfg = TrainConfig(epochs=1, batch_size=128, device="cpu")
    teacher = _teacher()
    lines: list[str] = []
    for name, width in (("a", 4), ("b", 8)):
        student = create_model("cnn1d_small", 4, width=width)
        distill(student, teacher, *tones, cfg, kd, log=lines.append, out_dir=tmp_path / name)
    assert len(_files(shared)) == 1
    assert not (tmp_path / "a" / "teacher_cache").exists()
    assert [("computing" in line, "reusing" in line) for line in lines if "teacher cache" in line] == [
        (True, False),
        (False, False),  # "wrote ..."
        (False, True),
    ]


def test_augmentation_is_refused_on_frames_it_does_not_fit() -> None:
    with pytest.raises(ConfigError, match=r"IQ frames \[2, L\]"):
        check_augmentable((3, 32, 32), AUGMENT)  # an image
    with pytest.raises(ConfigError, match="not shorter than the frames"):
        check_augmentable((2, 8), AUGMENT)
    check_augmentable((3, 32, 32), AugmentConfig())  # off: any data
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"augment": {"time_shfit": 3}})
    assert "did you mean 'time_shift'" in info.value.one_line()
    with pytest.raises(ConfigError, match="views must be >= 1"):
        from_dict(TrainConfig, {"augment": {"views": 0}})
