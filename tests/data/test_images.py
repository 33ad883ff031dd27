"""Image folders: both layouts, the eval transform, and seed-pure augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolder,
    ImageTransform,
    augment,
    load_image,
    view_seed,
)
from edgekd.errors import ConfigError, InputFileError

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

OCT = ("NORMAL", "DRUSEN", "CNV", "DME")


def _png(path, value: int = 128, size=(20, 16), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def _split_layout(root, splits=("train", "test"), per_class: int = 2) -> None:
    for split in splits:
        for c, name in enumerate(OCT):
            for i in range(per_class):
                suffix = ".jpg" if i % 2 else ".png"
                _png(root / split / name / f"{name}-{i}{suffix}", value=40 * c + i)


def test_split_layout_labels_and_splits(tmp_path):
    _split_layout(tmp_path)
    folder = ImageFolder(tmp_path, transform=ImageTransform(image_size=8, resize=12))
    assert folder.class_names == sorted(OCT) and len(folder) == 16
    assert folder.input_shape == (3, 8, 8)
    assert set(folder.split.tolist()) == {0, 2} and len(folder.split_indices("val")) == 0
    for i, path in enumerate(folder.files):
        assert folder.class_names[folder.y[i]] == path.parent.name
        assert ("train", "val", "test")[folder.split[i]] == path.parent.parent.name
    ordered = ImageFolder(tmp_path, class_names=list(OCT), transform=ImageTransform(8, 12))
    assert ordered.class_names == list(OCT) and ordered.files[0].parent.name == "NORMAL"


def test_flat_layout_is_split_deterministically(tmp_path):
    for name in OCT[:2]:
        for i in range(10):
            _png(tmp_path / name / f"{i}.png", value=i)
    a = ImageFolder(tmp_path, seed=1, transform=ImageTransform(8, 8))
    b = ImageFolder(tmp_path, seed=1, transform=ImageTransform(8, 8))
    assert np.array_equal(a.split, b.split)
    for label in range(2):
        assert np.bincount(a.split[a.y == label], minlength=3).tolist() == [7, 1, 2]


def test_grayscale_becomes_three_normalised_channels(tmp_path):
    _png(tmp_path / "g.png", value=200)
    image = load_image(tmp_path / "g.png", ImageTransform(image_size=8, resize=10))
    assert image.shape == (3, 8, 8) and image.dtype == np.float32
    expected = (200 / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(image, np.broadcast_to(expected[:, None, None], (3, 8, 8)), atol=1e-6)


def test_shorter_side_resize_then_centre_crop(tmp_path):
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))  # [H 32, W 64], value = 4 * column
    Image.fromarray(ramp, mode="L").save(tmp_path / "ramp.png")
    transform = ImageTransform(image_size=32, resize=32, mean=[0, 0, 0], std=[1, 1, 1])
    image = load_image(tmp_path / "ramp.png", transform)
    np.testing.assert_allclose(image[0, 0], ramp[0, 16:48] / 255, atol=1e-6)  # middle 32 columns
    half = load_image(
        tmp_path / "ramp.png", ImageTransform(image_size=8, resize=16, mean=[0] * 3, std=[1] * 3)
    )
    assert half.shape == (3, 8, 8)
    assert np.all(np.diff(half[0, 0]) > 0) and 0.4 < half[0, 0].mean() < 0.6  # centre of the ramp


def test_augment_is_a_pure_function_of_image_and_seed():
    image = np.random.default_rng(0).standard_normal((3, 24, 24)).astype(np.float32)
    before = image.copy()
    views = [augment(image, s) for s in range(12)]
    assert np.array_equal(image, before)  # input untouched
    assert all(np.array_equal(v, augment(image, s)) for s, v in enumerate(views))
    assert len({v.tobytes() for v in views}) > 8
    for view in views:
        assert view.shape == image.shape and view.dtype == np.float32
        # Each view is the (optionally flipped) image shifted by at most 8 pixels.
        matches = [
            (f, dy, dx)
            for f, src in ((False, image), (True, image[:, :, ::-1]))
            for dy in range(-8, 9)
            for dx in range(-8, 9)
            if np.array_equal(view[:, 8:16, 8:16], src[:, 8 + dy : 16 + dy, 8 + dx : 16 + dx])
        ]
        assert len(matches) == 1
    assert np.array_equal(augment(image, 5, max_shift=0, flip=False), image)


def test_view_seed_is_stable_and_distinct():
    assert view_seed(0, 1, 2) == view_seed(0, 1, 2)
    seeds = {view_seed(0, e, i) for e in range(3) for i in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)


def test_to_array_dataset_and_view(tmp_path):
    _split_layout(tmp_path, splits=("train", "val", "test"), per_class=3)
    folder = ImageFolder(tmp_path, transform=ImageTransform(8, 8))
    ds = folder.to_array_dataset(max_per_class=2)
    assert ds.x.shape == (4 * 3 * 2, 3, 8, 8) and ds.class_names == folder.class_names
    assert np.bincount(ds.split).tolist() == [8, 8, 8]
    assert np.array_equal(folder.view(0, None), folder[0][0])
    assert np.array_equal(folder.view(0, 9), augment(folder[0][0], 9))


def test_bad_inputs(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        ImageFolder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no class folders"):
        ImageFolder(tmp_path / "empty")
    _png(tmp_path / "set" / "CNV" / "a.png")
    _png(tmp_path / "set" / "NORMAL" / "a.png")
    with pytest.raises(ConfigError) as info:
        ImageFolder(tmp_path / "set", class_names=["CNN"])
    assert "did you mean 'CNV'" in info.value.one_line()
    with pytest.raises(ConfigError, match="image_size"):
        ImageFolder(tmp_path / "set", transform=ImageTransform(image_size=300, resize=256))
    (tmp_path / "set" / "CNV" / "broken.png").write_bytes(b"\x89PNG garbage")
    folder = ImageFolder(tmp_path / "set", transform=ImageTransform(8, 8))
    with pytest.raises(InputFileError, match=r"broken\.png cannot be read"):
        folder.to_array_dataset()


def test_missing_val_or_test_folder_is_carved_out_of_train(tmp_path):
    _split_layout(tmp_path, splits=("train", "test"), per_class=10)
    folder = ImageFolder(tmp_path, transform=ImageTransform(8, 8), val_fraction=0.2, seed=3)
    for label in range(len(OCT)):
        # 2 of each class's 10 train/ images become val; test/ keeps its own 10, gains none.
        assert np.bincount(folder.split[folder.y == label], minlength=3).tolist() == [8, 2, 10]
    carved = [folder.files[i] for i in folder.split_indices("val")]
    assert all(path.parent.parent.name == "train" for path in carved)
    again = ImageFolder(tmp_path, transform=ImageTransform(8, 8), val_fraction=0.2, seed=3)
    assert np.array_equal(folder.split, again.split)
    only_train = tmp_path / "only"
    _split_layout(only_train, splits=("train",), per_class=10)
    split = ImageFolder(only_train, transform=ImageTransform(8, 8)).split
    assert np.bincount(split, minlength=3).tolist() == [4 * 7, 4 * 1, 4 * 2]  # 0.1 val, 0.2 test


def _flat(root, classes=("CNV", "NORMAL"), per_class: int = 4):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", value=40 * c + i)
    return root


def _refused(root, fragment: str, error=InputFileError, **kwargs) -> str:
    with pytest.raises(error) as info:
        ImageFolder(root, transform=ImageTransform(8, 8), **kwargs).to_array_dataset()
    line = info.value.one_line()
    assert fragment in line and "\n" not in line, line
    return line


def test_one_class_and_empty_class_folders_are_refused(tmp_path):
    one = _flat(tmp_path / "one", classes=("CNV",))
    assert str(one) in _refused(one, "holds 1 class; a classifier needs at least 2")
    two = _flat(tmp_path / "two")
    _refused(two, "holds 1 class", class_names=["CNV"])
    (two / "DME").mkdir()
    assert str(two / "DME") in _refused(two, "holds no images")
    split = tmp_path / "split"
    _split_layout(split)
    (split / "test" / "NORMAL").rename(split / "test" / "EMPTY")
    for image in (split / "test" / "EMPTY").iterdir():
        image.unlink()
    _refused(split, f"class folder {split / 'test' / 'EMPTY'} holds no images")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("notes.txt", b"hello", "is not an image file"),
        ("scan.dcm", b"DICM", "is not an image file"),
        ("empty.png", b"", "is empty (0 bytes)"),
        ("text.jpg", b"not a jpeg", "cannot be read"),
        ("broken.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "cannot be read"),
    ],
)
def test_files_that_are_not_readable_images_are_named(tmp_path, name, content, fragment):
    root = _flat(tmp_path / "set")
    (root / "NORMAL" / name).write_bytes(content)
    assert str(root / "NORMAL" / name) in _refused(root, fragment)


def test_truncated_image_and_nested_folder_are_named(tmp_path):
    root = _flat(tmp_path / "set")
    image = root / "CNV" / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(image)
    image.write_bytes(image.read_bytes()[:300])
    assert str(image) in _refused(root, "cannot be read")
    image.unlink()
    (root / "CNV" / "more").mkdir()
    _refused(root, f"{root / 'CNV' / 'more'} in class folder {root / 'CNV'} is a folder")


def test_hidden_entries_are_skipped(tmp_path):
    root = _flat(tmp_path / "set")
    (root / "CNV" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".ipynb_checkpoints").mkdir()
    folder = ImageFolder(root, transform=ImageTransform(8, 8))
    assert folder.class_names == ["CNV", "NORMAL"] and len(folder) == 8


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    root = _flat(tmp_path / "set")
    # 20 x 16 = 320 pixels: over this limit, under the 2x at which Pillow itself refuses (it only warns).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    with pytest.warns(Image.DecompressionBombWarning):
        assert "declares 20 x 16 pixels" in _refused(root, str(root))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own refusal is named the same way
    assert "decompression bomb" in _refused(root, str(root / "CNV" / "0.png"))


@pytest.mark.parametrize(
    "transform",
    [
        {"image_size": 8, "resize": 100_000},
        {"image_size": 8, "resize": 8, "std": [0.2, float("nan"), 0.2]},
        {"image_size": 8, "resize": 8, "mean": [0.0, float("inf"), 0.0]},
    ],
)
def test_transform_values_that_cannot_work_are_config_errors(tmp_path, transform):
    with pytest.raises(ConfigError):
        ImageFolder(_flat(tmp_path / "set"), transform=ImageTransform(**transform))
