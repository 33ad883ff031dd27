"""Seeded, pure training views of uint8 images, suited to retinal OCT B-scans.

:class:`ImageAugment` is a config section (``train.augment.image``: plain fields, loaded by
:func:`edgekd.config.from_dict`) and the ``augment(x, seed)`` callable of the map-style
contract (:mod:`edgekd.data.mapstyle`): uint8 pixels [C, H, W] (C = 1 or 3, as
``LazyImageFolder(raw=True)`` and ``CachedImageDataset(raw=True)`` give them) in, uint8 pixels
of the same shape out, a pure function of (pixels, seed, config). A view computed in any
DataLoader worker is therefore the view the teacher cache scored.

One view, in order:

1. geometry, ONE bilinear resample (Pillow's affine transform, per band): a random resized
   crop (area fraction in ``crop_scale``, aspect in ``crop_ratio``, stretched back to the full
   size), a rotation by up to ``rotate`` degrees about the centre, a translation by up to
   ``translate`` of the size, and a horizontal flip with probability 1/2. Composing them into
   one matrix blurs the image once instead of four times. No vertical flip: the retina's
   layers have an up/down order. Pixels that come from outside the image take the median of
   the image's border pixels (per band): in a B-scan that is the dark background around the
   retina (vitreous above, deep tissue below), so an exposed corner looks like background
   instead of a hard black wedge a network could learn to key on; in a natural image it is a
   neutral colour of the frame.
2. photometric jitter through one 256-entry lookup table: contrast ``c`` around the image's
   mean ``m``, then brightness ``b``: ``v -> b * (m + c * (v - m))``, with ``b, c`` uniform in
   ``1 +- brightness``, ``1 +- contrast``; one table for every band, so grey stays grey.
3. speckle, OCT's characteristic noise: ``v -> v * (1 + n)``, ``n ~ N(0, speckle^2)``, one
   noise field [H, W] shared by the bands (it belongs to the scan, not to a colour), rounded
   and clipped back to uint8. ``n`` is sampled by inverse transform from 16-bit integers
   (:func:`normal_quantiles`): 4x faster than ``standard_normal``, tails cut at 4.3 sigma.

Randomness: every number comes from ``np.random.default_rng(seed)`` in a fixed order: first
ten uniforms (crop area, crop aspect, crop centre x and y, flip, angle, translation x and y,
brightness, contrast), ALWAYS drawn, whichever parts are on; then, only when ``speckle > 0``,
the noise field (H x W uint16 integers, row-major). Switching one part off therefore leaves
every other part's draw unchanged (turning speckle off drops only the last draw). Global
numpy/torch random state is never used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from edgekd.errors import ConfigError

_DRAWS = 10  # uniforms drawn for every view, see the module doc
_LEVELS = 1 << 16  # speckle noise: 16-bit draws through a normal quantile table
WHERE = "train.augment.image"


@dataclasses.dataclass(frozen=True)
class ViewParams:
    """The random parameters of one view (pixel-free: the same for any image size).

    ``scale`` crop area fraction, ``ratio`` crop aspect (width/height, in fractions of the
    image's sides), ``cx, cy`` crop centre in fractions of width/height, ``flip`` horizontal,
    ``angle`` degrees, ``tx, ty`` translation in fractions of width/height, ``brightness`` and
    ``contrast`` multiplicative factors (1: unchanged).
    """

    scale: float
    ratio: float
    cx: float
    cy: float
    flip: bool
    angle: float
    tx: float
    ty: float
    brightness: float
    contrast: float

    @property
    def crop_size(self) -> tuple[float, float]:
        """(width, height) of the crop in fractions of the image's sides, each in (0, 1]."""
        return math.sqrt(self.scale * self.ratio), math.sqrt(self.scale / self.ratio)

    @property
    def warps(self) -> bool:
        """Whether the geometry needs a resample (anything beyond a flip)."""
        return self.crop_size != (1.0, 1.0) or self.angle != 0.0 or self.tx != 0.0 or self.ty != 0.0


@dataclasses.dataclass
class ImageAugment:
    """Training views of uint8 images [C, H, W] (see the module doc); every part switchable off.

    ``crop_scale`` [lo, hi]: area fraction of the random resized crop ([1, 1]: no crop);
    ``crop_ratio`` [lo, hi]: its aspect range (log-uniform); ``hflip``: flip left/right with
    probability 1/2; ``rotate``: max degrees (uniform +-); ``translate``: max shift as a
    fraction of the size; ``brightness``, ``contrast``: factors uniform in 1 +- x; ``speckle``:
    std of the multiplicative noise. 0 (or [1, 1], or False) turns a part off.

    >>> aug = ImageAugment()
    >>> x = np.full((1, 32, 32), 100, np.uint8)
    >>> bool((aug(x, 7) == aug(x, 7)).all()) and aug(x, 7).shape == (1, 32, 32)
    True
    """

    crop_scale: list[float] = dataclasses.field(default_factory=lambda: [0.7, 1.0])
    crop_ratio: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.333])
    hflip: bool = True
    rotate: float = 5.0
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    speckle: float = 0.05

    # --- config ---

    @property
    def geometric(self) -> bool:
        """Whether any geometric part is on."""
        return list(self.crop_scale) != [1.0, 1.0] or self.hflip or self.rotate != 0 or self.translate != 0

    @property
    def enabled(self) -> bool:
        """False when every part is off: a view is then the image itself."""
        return self.geometric or self.brightness != 0 or self.contrast != 0 or self.speckle != 0

    def validate(self, where: str = WHERE) -> None:
        """Raise ConfigError, naming ``where.<field>`` and a fix, for a value out of range."""
        _check_pair(self.crop_scale, f"{where}.crop_scale", 0.0, 1.0, "area fractions in (0, 1]")
        _check_pair(self.crop_ratio, f"{where}.crop_ratio", 0.0, math.inf, "aspect ratios > 0")
        if not isinstance(self.hflip, bool):
            raise ConfigError(
                f"{where}.hflip must be true or false, got {self.hflip!r}", hint="hflip: false turns it off"
            )
        _check_range(self.rotate, f"{where}.rotate", 0.0, 45.0, "degrees in [0, 45]", closed=True)
        _check_range(self.translate, f"{where}.translate", 0.0, 0.5, "a fraction of the size in [0, 0.5)")
        for name in ("brightness", "contrast", "speckle"):
            _check_range(getattr(self, name), f"{where}.{name}", 0.0, 1.0, "a value in [0, 1)")

    # --- the random draw ---

    def draw(self, seed: int) -> ViewParams:
        """The parameters of the view of ``seed`` (the first draws of ``default_rng(seed)``)."""
        return self._draw(np.random.default_rng(int(seed)))

    def _draw(self, rng: np.random.Generator) -> ViewParams:
        u = rng.random(_DRAWS).tolist()  # always all of them: a fixed order (module doc)
        lo, hi = float(self.crop_scale[0]), float(self.crop_scale[1])
        scale = lo + u[0] * (hi - lo)
        ratio = _feasible_ratio(scale, float(self.crop_ratio[0]), float(self.crop_ratio[1]), u[1])
        width, height = math.sqrt(scale * ratio), math.sqrt(scale / ratio)
        return ViewParams(
            scale=scale,
            ratio=ratio,
            cx=width / 2 + u[2] * (1.0 - width),
            cy=height / 2 + u[3] * (1.0 - height),
            flip=bool(self.hflip) and u[4] < 0.5,
            angle=self.rotate * (2 * u[5] - 1),
            tx=self.translate * (2 * u[6] - 1),
            ty=self.translate * (2 * u[7] - 1),
            brightness=1.0 + self.brightness * (2 * u[8] - 1),
            contrast=1.0 + self.contrast * (2 * u[9] - 1),
        )

    # --- the view ---

    def __call__(self, pixels: np.ndarray, seed: int) -> np.ndarray:
        """The training view of ``pixels`` uint8 [C, H, W] (C = 1 or 3) for ``seed``: a new
        uint8 [C, H, W] array, a pure function of (pixels, seed, config)."""
        _check_pixels(pixels)
        self.validate()  # a few microseconds: a config built in Python is checked too
        if not self.enabled:
            return pixels.copy()
        rng = np.random.default_rng(int(seed))
        params = self._draw(rng)
        bands = _bands(pixels)
        if params.warps:
            bands = _warp(bands, affine_matrix(params, pixels.shape[2], pixels.shape[1]))
        elif params.flip:
            bands = [band.transpose(_image().Transpose.FLIP_LEFT_RIGHT) for band in bands]
        if params.brightness != 1.0 or params.contrast != 1.0:
            lut = jitter_table(params.brightness, params.contrast, _mean(bands))
            bands = [band.point(lut) for band in bands]
        out = np.stack([np.asarray(band) for band in bands])  # [1 or C, H, W]
        if self.speckle > 0:
            out = _speckle(out, rng, float(self.speckle))
        return out if len(out) == len(pixels) else np.repeat(out, len(pixels), axis=0)


def _check_pair(value: Any, where: str, low: float, high: float, what: str) -> None:
    """``value`` must be [lo, hi] with low < lo <= hi <= high (finite numbers)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ok = ok and all(math.isfinite(v) and low < v <= high for v in value) and value[0] <= value[1]
    if not ok:
        raise ConfigError(
            f"{where} must be two {what}, smallest first, got {value!r}",
            hint=f"e.g. {where.rsplit('.', 1)[-1]}: {[0.7, 1.0] if high == 1.0 else [0.75, 1.333]}",
        )


def _check_range(value: Any, where: str, low: float, high: float, what: str, closed: bool = False) -> None:
    """``value`` must be a finite number in [low, high) (or [low, high] when ``closed``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < low or value > high or (value == high and not closed):
        name = where.rsplit(".", 1)[-1]
        example = getattr(ImageAugment, name, None)  # the default, an OCT-sized strength
        raise ConfigError(
            f"{where} must be {what}, got {value!r}", hint=f"e.g. {name}: {example}; 0 turns it off"
        )


def _check_pixels(pixels: Any) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        got = pixels.dtype if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise ConfigError(
            f"the image augmentation ({WHERE}) takes uint8 pixels, got {got}",
            hint="read the images raw (uint8; normalised on the device) or turn the image augmentation off",
        )
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3) or min(pixels.shape) < 1:
        raise ConfigError(
            f"the image augmentation ({WHERE}) takes images [C, H, W] with C = 1 or 3, "
            f"got {list(pixels.shape)}",
            hint="use it on image data only",
        )


def _feasible_ratio(scale: float, low: float, high: float, u: float) -> float:
    """Aspect log-uniform in [low, high] narrowed to the ratios whose crop of area ``scale``
    fits the image (``scale <= ratio <= 1/scale``): one draw, never a retry loop, so the draw
    count stays fixed. An empty intersection takes the feasible ratio nearest to the range."""
    lo, hi = max(math.log(low), math.log(scale)), min(math.log(high), -math.log(scale))
    if lo > hi:
        return 1.0 / scale if math.log(low) > -math.log(scale) else scale
    return math.exp(lo + u * (hi - lo))


def affine_matrix(params: ViewParams, width: int, height: int) -> tuple[float, ...]:
    """Pillow's AFFINE data (a, b, c, d, e, f): output point (x, y) reads input point
    (a x + b y + c, d x + e y + f), continuous coordinates (pixel i spans [i, i + 1)).

    The forward chain is crop -> stretch to the full size -> rotate about the centre ->
    translate -> flip; this is its inverse: unflip, untranslate, unrotate, map into the crop.
    """
    crop_w, crop_h = params.crop_size
    theta = math.radians(params.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    f = -1.0 if params.flip else 1.0
    # A = D @ R(-theta) @ F, D = diag(crop_w, crop_h), F = diag(f, 1)
    a, b = crop_w * cos * f, crop_w * sin
    d, e = -crop_h * sin * f, crop_h * cos
    ox, oy = width / 2, height / 2  # output centre
    tx, ty = params.tx * width, params.ty * height
    # input = C_in + A (P - c_out) - D R t
    c = params.cx * width - (a * ox + b * oy) - crop_w * (cos * tx + sin * ty)
    g = params.cy * height - (d * ox + e * oy) - crop_h * (-sin * tx + cos * ty)
    return (a, b, c, d, e, g)


def jitter_table(brightness: float, contrast: float, mean: float) -> list[int]:
    """256 uint8 values: ``v -> clip(round(brightness * (mean + contrast * (v - mean))))``."""
    v = np.arange(256, dtype=np.float64)
    out = brightness * (mean + contrast * (v - mean))
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.int64).tolist()


def _image() -> Any:
    from edgekd.data.images import _pil_image  # lazy: Pillow, with the project's missing-Pillow message

    return _pil_image()


def _bands(pixels: np.ndarray) -> list[Any]:
    """Pillow "L" images of the bands; a grayscale image repeated in 3 bands is one band (its
    view is computed once: every step is per band with the same parameters)."""
    Image = _image()
    pixels = np.ascontiguousarray(pixels)
    if len(pixels) == 3 and np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[0], pixels[2]):
        return [Image.fromarray(pixels[0])]
    return [Image.fromarray(band) for band in pixels]


def _border_median(band: Any) -> int:
    """Median of the outermost rows and columns of a Pillow "L" image."""
    a = np.asarray(band)
    return int(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))


def _warp(bands: list[Any], data: tuple[float, ...]) -> list[Any]:
    """Each band resampled once (bilinear) through ``data``, filled with its border median."""
    Image = _image()
    return [
        band.transform(
            band.size,
            Image.Transform.AFFINE,
            data,
            resample=Image.Resampling.BILINEAR,
            fillcolor=_border_median(band),
        )
        for band in bands
    ]


def _mean(bands: list[Any]) -> float:
    """Mean pixel value over all bands, from Pillow's histograms (one C pass per band)."""
    counts = np.sum([band.histogram() for band in bands], axis=0)
    return float(np.dot(counts, np.arange(256)) / max(1, counts.sum()))


@functools.lru_cache(maxsize=1)
def normal_quantiles() -> np.ndarray:
    """float32 [65536]: the standard normal's quantiles at (k + 0.5) / 65536, k = 0..65535.

    Indexing it with uniform 16-bit integers samples N(0, 1) by inverse transform (symmetric,
    mean 0, std 1 - 1e-5, tails cut at 4.3 sigma), 4x faster than ``standard_normal``: the
    noise field is most of a view's cost otherwise. Computed in float64 (torch's ``ndtri``),
    the same in every process."""
    import torch  # lazy: only speckle needs it, and the data loaders have it loaded already

    p = (torch.arange(_LEVELS, dtype=torch.float64) + 0.5) / _LEVELS
    return torch.special.ndtri(p).to(torch.float32).numpy()


def _speckle(pixels: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """``pixels * (1 + n)``, n float32 [H, W] ~ N(0, std^2) shared by the bands (drawn as 16-bit
    integers through :func:`normal_quantiles`), rounded half up and clipped to uint8."""
    draws = rng.integers(0, _LEVELS, size=pixels.shape[1:], dtype=np.uint16)
    factor = np.take(normal_quantiles(), draws)
    factor *= std
    factor += 1.0
    out = pixels.astype(np.float32)
    out *= factor
    out += 0.5  # round half up (the values are clipped to >= 0 next)
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)
