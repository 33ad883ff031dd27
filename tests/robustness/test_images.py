"""Image folders (PNG/JPEG, ImageFolder layout) through the recipes that read them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import png_header_only

VICTIM = Path("cat") / "cat03.png"  # the one image a per-image mutation breaks


def _image(content):
    def apply(root: Path, valid) -> list[str]:
        path = root / VICTIM
        path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        return [VICTIM.name]

    return apply


def _one_class(root: Path, valid) -> list[str]:
    shutil.rmtree(root / "dog")
    return [root.name, "cat"]


def _empty_class(root: Path, valid) -> list[str]:
    for path in (root / "dog").iterdir():
        path.unlink()
    return ["dog"]


def _no_class_folders(root: Path, valid) -> list[str]:
    for folder in ("cat", "dog"):
        for path in (root / folder).iterdir():
            path.rename(root / path.name)
        (root / folder).rmdir()
    return [root.name]


def _empty_root(root: Path, valid) -> list[str]:
    shutil.rmtree(root)
    root.mkdir()
    return [root.name]


def _non_images(root: Path, valid) -> list[str]:
    for path in root.glob("*/*.png"):
        path.rename(path.with_suffix(".txt"))
    return [root.name]


def _split_layout_tiny(root: Path, valid) -> list[str]:
    """train/CLASS with one image each: val and test carved from it come out empty."""
    for folder in ("cat", "dog"):
        (root / "train" / folder).mkdir(parents=True)
        first = sorted((root / folder).iterdir())[0]
        first.rename(root / "train" / folder / first.name)
        shutil.rmtree(root / folder)
    return [root.name]


FOLDER = {
    "png-truncated": _image(lambda data: data[: len(data) // 2]),
    "png-empty": _image(b""),
    "png-text": _image(b"this is not an image\n"),
    "png-bomb-header": _image(png_header_only(30000, 30000)),
    "png-zero-width": _image(png_header_only(0, 20)),
    "png-header-only": _image(png_header_only(20, 20)),
    "jpeg-garbage": _image(b"\xff\xd8\xff\xe0" + b"\x00" * 64),
    "one-class": _one_class,
    "class-folder-empty": _empty_class,
    "no-class-folders": _no_class_folders,
    "root-empty": _empty_root,
    "only-non-images": _non_images,
    "split-layout-one-image-per-class": _split_layout_tiny,
}


def write_mutation(name: str, valid, root: Path) -> list[str]:
    """Copy the valid folder to ``root`` and break it; return names the error may give."""
    shutil.copytree(valid.images, root)
    if name == "valid":
        return []
    return FOLDER[name](root, valid)


CASES = matrix("images", list(FOLDER), ["distill-recipe"])
CASES += matrix("images", ["png-truncated", "one-class", "class-folder-empty"], ["run-recipe"])
VALID = [case("images", e, "accept", f"valid-{e}", "valid", e) for e in ["distill-recipe", "run-recipe"]]


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_images_refused(valid, box, mutation, entry):
    root = box.dir / f"{mutation}-images"
    offenders = write_mutation(mutation, valid, root)
    expect_refusal(box, argv(entry, valid, box, source="imagefolder", source_path=root), offenders)


@pytest.mark.robustness(kind="images", entry="distill-recipe", expect="refuse")
def test_images_root_is_a_file(valid, box):
    """data.path names one image, not a folder."""
    image = box.dir / "just-one.png"
    shutil.copy(valid.images / VICTIM, image)
    expect_refusal(
        box, argv("distill-recipe", valid, box, source="imagefolder", source_path=image), image.name
    )


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_images_accepted(valid, box, mutation, entry):
    root = box.dir / "images-copy"
    write_mutation(mutation, valid, root)
    expect_acceptance(box, argv(entry, valid, box, source="imagefolder", source_path=root))
