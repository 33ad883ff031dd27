"""Seeded, pure image training views (edgekd.data.image_augment): each part alone, all together,
the config checks, and the map-style contract through a lazy image folder."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from edgekd.config import from_dict
from edgekd.data.image_augment import ImageAugment, affine_matrix, jitter_table, normal_quantiles
from edgekd.errors import ConfigError

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

OFF = dict(
    crop_scale=[1.0, 1.0],
    crop_ratio=[1.0, 1.0],
    hflip=False,
    rotate=0.0,
    translate=0.0,
    brightness=0.0,
    contrast=0.0,
    speckle=0.0,
)


def only(**parts) -> ImageAugment:
    """Every part off but ``parts``."""
    return ImageAugment(**{**OFF, **parts})


def scan(channels: int = 1, height: int = 48, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 [C, H, W], OCT-like: bright horizontal layers in mid-range grey, a little noise."""
    rng = np.random.default_rng(seed)
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    band = 90 + 60 * np.sin(yy / 5.0 + np.sin(xx / 9.0)) + rng.normal(0, 6, (height, width))
    out = np.clip(band, 20, 230).astype(np.uint8)[None].repeat(channels, axis=0)
    if channels == 3:
        out[1] = np.clip(out[1].astype(int) + 15, 0, 255)  # a colour image, not a grey one
    return out


def seed_where(aug: ImageAugment, predicate) -> int:
    return next(s for s in range(1000) if predicate(aug.draw(s)))


# --- purity, shapes ---


@pytest.mark.parametrize("channels", [1, 3])
def test_same_seed_same_bytes_other_seed_other_view(channels):
    x = scan(channels, 40, 56)
    aug = ImageAugment()
    before = x.copy()
    a, b, c = aug(x, 11), aug(x, 11), aug(x, 12)
    assert a.dtype == np.uint8 and a.shape == x.shape and a.flags.c_contiguous
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, before)  # the input is never written
    assert not np.array_equal(a, x)


def test_independent_of_global_random_state_and_of_pickling():
    x, aug = scan(), ImageAugment()
    np.random.seed(1)
    torch.manual_seed(1)
    first = aug(x, 5)
    np.random.seed(2)
    torch.manual_seed(2)
    np.random.random(100)
    torch.rand(100)
    again = pickle.loads(pickle.dumps(aug))(x, 5)
    assert first.tobytes() == again.tobytes()


def test_refuses_pixels_that_are_not_uint8_images():
    aug = ImageAugment()
    with pytest.raises(ConfigError, match=r"uint8.*float32"):
        aug(scan().astype(np.float32), 0)
    with pytest.raises(ConfigError, match=r"C = 1 or 3.*\[2, 8, 8\]"):
        aug(np.zeros((2, 8, 8), np.uint8), 0)
    with pytest.raises(ConfigError, match=r"\[8, 8\]"):
        aug(np.zeros((8, 8), np.uint8), 0)


# --- each part alone ---


def test_everything_off_is_the_identity():
    aug = ImageAugment(**OFF)
    assert not aug.enabled and ImageAugment().enabled
    x = scan(3)
    out = aug(x, 4)
    np.testing.assert_array_equal(out, x)
    assert out is not x


@pytest.mark.parametrize("channels", [1, 3])
def test_hflip_alone_mirrors_exactly_or_not_at_all(channels):
    x, aug = scan(channels, 30, 41), only(hflip=True)
    flips = seed_where(aug, lambda p: p.flip)
    keeps = seed_where(aug, lambda p: not p.flip)
    np.testing.assert_array_equal(aug(x, flips), x[:, :, ::-1])
    np.testing.assert_array_equal(aug(x, keeps), x)
    assert 350 < sum(aug.draw(s).flip for s in range(1000)) < 650


def test_full_crop_without_rotation_or_shift_keeps_the_geometry():
    x = scan()
    aug = only(brightness=0.2)  # crop_scale [1, 1], ratio [1, 1], no rotation/translation
    for seed in range(5):
        p = aug.draw(seed)
        assert p.crop_size == (1.0, 1.0) and not p.warps
        np.testing.assert_array_equal(aug(x, seed), np.asarray(jitter_table(p.brightness, 1.0, 0.0))[x])


def test_the_affine_resample_is_exact_at_whole_pixels():
    x = scan(1, 30, 41)
    p = only().draw(0)
    warp = lambda params: np.asarray(  # noqa: E731
        Image.fromarray(x[0]).transform((41, 30), Image.Transform.AFFINE, affine_matrix(params, 41, 30))
    )
    np.testing.assert_array_equal(warp(p), x[0])
    shifted = warp(dataclasses.replace(p, tx=4 / 41, ty=-2 / 30))  # 4 pixels right, 2 up
    np.testing.assert_array_equal(shifted[:-2, 4:], x[0, 2:, :-4])
    flipped = warp(dataclasses.replace(p, flip=True, tx=4 / 41))  # 4 pixels right, then mirrored
    np.testing.assert_array_equal(flipped[:, :-4], x[0, :, ::-1][:, 4:])


def test_crop_magnifies_a_part_of_the_image():
    ramp = np.tile((np.arange(64) * 3).astype(np.uint8), (1, 64, 1))  # value = 3 * column
    aug = only(crop_scale=[0.25, 0.25])  # half the width and height, stretched to the full size
    centres = []
    for seed in range(12):
        p = aug.draw(seed)
        assert p.crop_size == pytest.approx((0.5, 0.5))
        centres.append((p.cx, p.cy))
        for image, line in ((ramp, lambda v: v[0, 32]), (ramp.transpose(0, 2, 1), lambda v: v[0, :, 32])):
            start = (p.cx if image is ramp else p.cy) - 0.25
            profile = line(aug(np.ascontiguousarray(image), seed)).astype(float)
            assert np.diff(profile[2:-2]).mean() == pytest.approx(1.5, abs=0.05)  # slope halved
            assert profile[0] == pytest.approx(start * 64 * 3, abs=3)  # starts where the crop starts
    cx, cy = np.asarray(centres).T
    assert cx.min() >= 0.25 and cx.max() <= 0.75 and np.ptp(cx) > 0.2 and np.ptp(cy) > 0.2


def test_rotation_and_translation_move_pixels_and_fill_with_the_border():
    x = np.full((1, 40, 40), 30, np.uint8)
    x[0, 10:30, 10:30] = 200  # a bright square on a dark background
    out = only(rotate=30.0, translate=0.2)(x, 3)
    assert not np.array_equal(out, x)
    assert set(np.unique(out[0, [0, -1]])) <= set(range(30, 201))  # filled with 30, never 0
    assert abs(int((out > 115).sum()) - 400) < 40  # the square keeps its area


def test_brightness_moves_the_mean_the_drawn_way():
    x = scan()
    aug = only(brightness=0.3)
    for seed in range(8):
        b = aug.draw(seed).brightness
        assert 0.7 <= b <= 1.3
        ratio = aug(x, seed).mean() / x.mean()
        assert ratio == pytest.approx(b, abs=0.01)


def test_contrast_scales_the_spread_around_the_mean():
    x = scan()
    aug = only(contrast=0.3)
    for seed in range(4):
        c = aug.draw(seed).contrast
        out = aug(x, seed).astype(float)
        assert out.mean() == pytest.approx(x.mean(), abs=0.6)
        assert out.std() / x.std() == pytest.approx(c, abs=0.02)


def test_speckle_keeps_the_mean_and_adds_multiplicative_variance():
    x = np.full((1, 128, 128), 128, np.uint8)
    out = only(speckle=0.1)(x, 0).astype(float)
    assert out.mean() == pytest.approx(128, abs=0.5)
    assert out.std() == pytest.approx(12.8, rel=0.05)
    dark = only(speckle=0.1)(x // 4, 0).astype(float)
    assert dark.std() == pytest.approx(3.2, rel=0.1)  # multiplicative: 1/4 of the level, 1/4 the noise
    q = normal_quantiles()
    assert (
        q.dtype == np.float32 and abs(float(q.mean())) < 1e-6 and float(q.std()) == pytest.approx(1, abs=1e-4)
    )


def test_a_grey_image_in_three_bands_gets_the_one_band_view():
    grey = scan(1)
    aug = ImageAugment()
    one, three = aug(grey, 9), aug(np.repeat(grey, 3, axis=0), 9)
    for band in three:
        np.testing.assert_array_equal(band, one[0])


def test_switching_a_part_off_keeps_the_other_draws():
    full, fewer = ImageAugment(), ImageAugment(rotate=0.0, hflip=False, speckle=0.0)
    for seed in range(5):
        a, b = full.draw(seed), fewer.draw(seed)
        assert dataclasses.replace(a, angle=0.0, flip=False) == b
    # a constant image looks the same through any geometry: the noise field must be too
    flat = np.full((1, 24, 24), 120, np.uint8)
    noise = only(speckle=0.1)
    moved = only(speckle=0.1, hflip=True, rotate=20.0, translate=0.2, crop_scale=[0.5, 1.0])
    for seed in range(3):
        np.testing.assert_array_equal(noise(flat, seed), moved(flat, seed))


def test_crop_aspect_is_kept_feasible():
    aug = only(crop_scale=[0.5, 0.9], crop_ratio=[0.2, 5.0])
    for seed in range(50):
        w, h = aug.draw(seed).crop_size
        assert 0 < w <= 1 + 1e-12 and 0 < h <= 1 + 1e-12
    w, h = only(crop_scale=[0.9, 0.9], crop_ratio=[3.0, 4.0]).draw(0).crop_size  # no ratio fits
    assert w == pytest.approx(1.0) and h == pytest.approx(0.9)


# --- config ---


def test_defaults_validate_and_load_from_a_mapping():
    ImageAugment().validate()
    aug = from_dict(ImageAugment, {"rotate": 3, "crop_scale": [0.8, 1]}, "train.augment.image")
    assert aug.rotate == 3.0 and aug.crop_scale == [0.8, 1.0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("crop_scale", [0.0, 1.0]),
        ("crop_scale", [0.9, 0.7]),
        ("crop_scale", [0.5, 1.2]),
        ("crop_scale", [0.5]),
        ("crop_ratio", [-1.0, 1.0]),
        ("crop_ratio", [1.5, 1.0]),
        ("crop_ratio", [1.0, float("inf")]),
        ("hflip", 1),
        ("rotate", 46.0),
        ("rotate", -1.0),
        ("translate", 0.5),
        ("brightness", 1.0),
        ("contrast", -0.1),
        ("speckle", float("nan")),
    ],
)
def test_validate_names_the_bad_field(field, value):
    with pytest.raises(ConfigError, match=rf"train\.augment\.image\.{field} must be") as err:
        ImageAugment(**{field: value}).validate()
    assert err.value.hint
    with pytest.raises(ConfigError, match=rf"aug\.{field} "):
        ImageAugment(**{field: value}).validate(where="aug")


# --- through the map-style contract ---


def test_views_through_a_lazy_image_folder(tmp_path):
    from edgekd.data.images import ImageFolder, ImageTransform
    from edgekd.data.lazy_images import LazyImageFolder, prepare_image_cache

    for c, name in enumerate(("CNV", "NORMAL")):
        for i in range(3):
            path = tmp_path / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scan(1, 36, 40, seed=10 * c + i)[0]).save(path)
    listing = ImageFolder(tmp_path, transform=ImageTransform(image_size=32, resize=34))
    folder = LazyImageFolder(listing, raw=True, channels=1, augment=ImageAugment(), augment_seed=3)
    for i in range(len(folder)):
        x, y = folder[(i, 1)]
        again, _ = folder[(i, 1)]
        other, _ = folder[(i, 2)]
        plain, _ = folder[i]
        assert x.dtype == torch.uint8 and tuple(x.shape) == (1, 32, 32) and y == folder.y[i]
        assert torch.equal(x, again)
        assert not torch.equal(x, other) and not torch.equal(x, plain)
    moved = LazyImageFolder(listing, raw=True, channels=1, augment=ImageAugment(), augment_seed=4)
    assert not torch.equal(moved[(0, 1)][0], folder[(0, 1)][0])
    # what a DataLoader worker gets (the dataset pickled), and the uint8 cache, draw the same views
    shipped = pickle.loads(pickle.dumps(folder))
    cached = prepare_image_cache(folder, tmp_path / "cache.npy")
    keys = [(i, e) for i in range(len(folder)) for e in (0, 5)]
    for (a, _), (b, _), (c, _) in zip(
        *(d.__getitems__(keys) for d in (folder, shipped, cached)), strict=True
    ):
        assert torch.equal(a, b) and torch.equal(a, c)
