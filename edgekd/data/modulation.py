"""Synthetic modulation-recognition frames in the spirit of RadioML 2016.10a (numpy only).

Each frame is complex baseband, ``frame_length`` samples at ``samples_per_symbol``
samples per symbol, stored as float32 [2, L] (row 0 in-phase, row 1 quadrature).
The chain per frame:

1. symbols: linear classes draw from their constellation (unit average power) and are
   shaped by a root-raised-cosine pulse; GFSK and CPFSK are binary continuous-phase FSK
   (modulation index 0.5, GFSK with a Gaussian frequency pulse of BT 0.35).
2. channel: a random symbol timing offset (a whole number of samples in
   ``[0, samples_per_symbol)``), a carrier frequency offset uniform in ``±max_cfo``
   cycles/sample, and a phase uniform in ``[0, 2π)``.
3. AWGN at the frame's SNR label, defined on the frame's measured average signal power
   (the shaped signal's power is not 1: unit-energy taps spread each symbol over many samples).
4. normalisation of each frame to unit average power, as RadioML-style pipelines do before
   a network sees the data: the absolute scale carries no class information, and without it
   a network could read the SNR off the amplitude. The SNR stays meaningful as a ratio.

The default configuration is that clean chain over 8 digital classes. RadioML 2016's
analog classes (AM-DSB, AM-SSB, WBFM, from a band-limited random "audio" source) and its
channel (random-walk carrier and sample-rate offsets, 3-tap Rician multipath) are switched
on per config field; :func:`rml2016_config` sets all 11 classes and that channel at once
(see :mod:`edgekd.data.channel`). Even then this set is for testing the pipeline and for
quick experiments, not for publishing accuracy numbers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from edgekd.data import channel
from edgekd.data.channel import ANALOG_MODULATIONS
from edgekd.data.dataset import ArrayDataset
from edgekd.data.splits import assign_splits, check_fractions
from edgekd.data.validate import check_memory
from edgekd.errors import ConfigError
from edgekd.registry import suggestion

MODULATIONS = ("BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK")  # the default set
# Every selectable class. New names are appended: a class's seed stream is keyed by its index.
ALL_MODULATIONS = MODULATIONS + ANALOG_MODULATIONS
RML2016_CLASSES = (
    "8PSK",
    "AM-DSB",
    "AM-SSB",
    "BPSK",
    "CPFSK",
    "GFSK",
    "PAM4",
    "QAM16",
    "QAM64",
    "QPSK",
    "WBFM",
)
FSK_MODULATIONS = ("GFSK", "CPFSK")
RRC_SPAN_SYMBOLS = 8
FSK_INDEX = 0.5  # modulation index h: peak-to-peak deviation / symbol rate
GFSK_BT = 0.35  # Gaussian filter bandwidth x symbol period
_GAUSSIAN_SPAN_SYMBOLS = 3
# Frames generated per vectorised batch: bounds peak memory for large sets. A fixed constant
# (not derived from free memory or CPU count) so the same config always draws the same stream.
_CHUNK = 4096
MAX_ABS_SNR = 100  # dB: far beyond any radio data, and well inside the int16 labels


@dataclasses.dataclass
class SyntheticModulationConfig:
    """What :func:`generate_modulation_dataset` builds. SNRs in dB, CFO in cycles/sample.

    Channel fields off by default (0 / False): ``cfo_walk_std`` (std of the per-sample step of
    the carrier offset, which stays within ``±max_cfo``), ``max_sro`` (relative sample-rate
    offset bound) with ``sro_walk_std`` (its per-sample step), ``multipath`` with
    ``rician_k`` (line-of-sight to scattered power ratio of each of the 3 taps).
    """

    classes: list[str] = dataclasses.field(default_factory=lambda: list(MODULATIONS))
    snr_min: int = -20
    snr_max: int = 18
    snr_step: int = 2
    frames_per_class_snr: int = 40
    frame_length: int = 128
    samples_per_symbol: int = 8
    rolloff: float = 0.35
    max_cfo: float = 0.01
    cfo_walk_std: float = 0.0
    max_sro: float = 0.0
    sro_walk_std: float = 0.0
    multipath: bool = False
    rician_k: float = 4.0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def validate(self) -> None:
        if not self.classes:
            raise ConfigError("classes is empty", hint=f"name one or more of {', '.join(ALL_MODULATIONS)}")
        for name in self.classes:
            if name not in ALL_MODULATIONS:
                raise ConfigError(
                    f"unknown modulation {name!r}",
                    hint=suggestion(name, list(ALL_MODULATIONS), "known modulations"),
                )
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError("classes lists a modulation twice", hint="name each modulation once")
        if self.snr_step <= 0:
            raise ConfigError(f"snr_step must be positive, got {self.snr_step}", hint="use e.g. snr_step: 2")
        if self.snr_min > self.snr_max:
            raise ConfigError(
                f"empty SNR range: snr_min {self.snr_min} dB > snr_max {self.snr_max} dB",
                hint="set snr_min <= snr_max",
            )
        if max(abs(self.snr_min), abs(self.snr_max)) > MAX_ABS_SNR:
            raise ConfigError(
                f"SNR range {self.snr_min}..{self.snr_max} dB goes beyond ±{MAX_ABS_SNR} dB",
                hint="e.g. snr_min: -20, snr_max: 18",
            )
        for key in ("frames_per_class_snr", "frame_length"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if not 2 <= self.samples_per_symbol <= self.frame_length:
            raise ConfigError(
                f"samples_per_symbol must be in 2..frame_length ({self.frame_length}), "
                f"got {self.samples_per_symbol}",
                hint="8 is typical",
            )
        for key in ("rolloff", "max_cfo", "cfo_walk_std", "max_sro", "sro_walk_std", "rician_k"):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} must be a finite number, got {getattr(self, key)}")
        if not 0.0 < self.rolloff <= 1.0:
            raise ConfigError(f"rolloff must be in (0, 1], got {self.rolloff}", hint="0.35 is typical")
        if not 0.0 <= self.max_cfo < 0.5:
            raise ConfigError(f"max_cfo must be in [0, 0.5) cycles/sample, got {self.max_cfo}")
        for key in ("cfo_walk_std", "sro_walk_std", "rician_k"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be non-negative, got {getattr(self, key)}")
        if not 0.0 <= self.max_sro < 0.1:
            raise ConfigError(f"max_sro must be in [0, 0.1), got {self.max_sro}", hint="5e-4 is realistic")
        check_fractions(self.val_fraction, self.test_fraction)
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")
        frames = len(self.classes) * len(self.snr_values()) * self.frames_per_class_snr
        check_memory(
            frames * 2 * self.frame_length * 4,
            f"synthetic data (data.synthetic) of {frames} frames x {self.frame_length} samples",
            "lower data.synthetic.frames_per_class_snr or frame_length",
            error=ConfigError,
        )

    def snr_values(self) -> np.ndarray:
        """SNR labels in dB, int16 [S], from snr_min to snr_max inclusive."""
        return np.arange(self.snr_min, self.snr_max + 1, self.snr_step, dtype=np.int16)


def constellation(name: str) -> np.ndarray:
    """Symbol alphabet of a linear modulation, complex128 [M], unit average power."""
    if name == "BPSK":
        points = np.array([-1.0, 1.0], dtype=np.complex128)
    elif name == "QPSK":
        points = np.exp(1j * (np.pi / 4 + np.pi / 2 * np.arange(4)))
    elif name == "8PSK":
        points = np.exp(2j * np.pi * np.arange(8) / 8)
    elif name in ("QAM16", "QAM64"):
        side = 4 if name == "QAM16" else 8
        levels = np.arange(-(side - 1), side, 2, dtype=np.float64)
        points = (levels[:, None] + 1j * levels[None, :]).ravel()
    elif name == "PAM4":
        points = np.array([-3.0, -1.0, 1.0, 3.0], dtype=np.complex128)
    else:
        raise ConfigError(f"{name!r} is not a linear modulation", hint=f"use one of {', '.join(_linear())}")
    return points / np.sqrt(np.mean(np.abs(points) ** 2))


def _linear() -> list[str]:
    return [m for m in MODULATIONS if m not in FSK_MODULATIONS]


def rml2016_config(**overrides: object) -> SyntheticModulationConfig:
    """The 11 RadioML 2016 classes through a RadioML-2016-like channel (fields can be overridden).

    Offsets follow GNU Radio's dynamic channel model as RadioML used it (CFO within ±500 Hz,
    SRO within ±50 Hz at 200 kHz), scaled up to be visible within a 128-sample frame.
    """
    base: dict[str, object] = {
        "classes": list(RML2016_CLASSES),
        "max_cfo": 0.01,
        "cfo_walk_std": 5e-5,
        "max_sro": 5e-4,
        "sro_walk_std": 1e-5,
        "multipath": True,
        "rician_k": 4.0,
    }
    return SyntheticModulationConfig(**{**base, **overrides})  # type: ignore[arg-type]


def rrc_taps(samples_per_symbol: int, rolloff: float, span_symbols: int = RRC_SPAN_SYMBOLS) -> np.ndarray:
    """Root-raised-cosine pulse, float64 [span_symbols * samples_per_symbol + 1], unit energy.

    Centred on the middle tap (t = 0). ``rolloff`` is the excess bandwidth β in [0, 1].
    The closed form is 0/0 at t = 0 and at t = ±Ts/(4β); those taps use their limits.
    """
    sps, beta = int(samples_per_symbol), float(rolloff)
    half = span_symbols * sps // 2
    t = np.arange(-half, half + 1, dtype=np.float64) / sps  # in symbol periods
    taps = np.empty_like(t)
    at_zero = np.isclose(t, 0.0)
    singular = np.isclose(np.abs(t), 1.0 / (4.0 * beta)) if beta > 0 else np.zeros_like(at_zero)
    regular = ~(at_zero | singular)
    tr = t[regular]
    taps[regular] = (np.sin(np.pi * tr * (1 - beta)) + 4 * beta * tr * np.cos(np.pi * tr * (1 + beta))) / (
        np.pi * tr * (1 - (4 * beta * tr) ** 2)
    )
    taps[at_zero] = 1 - beta + 4 * beta / np.pi
    if beta > 0:
        arg = np.pi / (4 * beta)
        taps[singular] = beta / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(arg) + (1 - 2 / np.pi) * np.cos(arg))
    return taps / np.sqrt(np.sum(taps**2))


def fsk_frequency_pulse(name: str, samples_per_symbol: int) -> np.ndarray:
    """Frequency pulse of CPFSK (rectangular) or GFSK (Gaussian-filtered), float64 [K].

    Sums to 0.5, so one symbol ``a = ±1`` turns the phase by ``2π h * 0.5 * a = π h a``.
    """
    sps = int(samples_per_symbol)
    rect = np.full(sps, 1.0)
    if name == "GFSK":
        # Gaussian impulse response of a filter with 3 dB bandwidth B: sigma = sqrt(ln 2) / (2π B).
        sigma = math.sqrt(math.log(2.0)) / (2 * math.pi * GFSK_BT) * sps  # samples
        n = np.arange(-_GAUSSIAN_SPAN_SYMBOLS * sps // 2, _GAUSSIAN_SPAN_SYMBOLS * sps // 2 + 1)
        rect = np.convolve(rect, np.exp(-0.5 * (n / sigma) ** 2))
    elif name != "CPFSK":
        raise ConfigError(
            f"{name!r} is not an FSK modulation", hint=f"use one of {', '.join(FSK_MODULATIONS)}"
        )
    return 0.5 * rect / rect.sum()


def _pulse_matrix(taps: np.ndarray, sps: int, length: int) -> np.ndarray:
    """G float64 [n_sym, length]: output sample j (after the filter has filled) from symbol k.

    Output j of the symbol stream upsampled by ``sps`` and filtered by ``taps`` is
    ``sum_k a[k] * G[k, j]``. Sample 0 is the first one that every tap contributes to,
    so the window never sees the start-up transient.
    """
    first = len(taps) - 1
    n_sym = (first + length - 1) // sps + 1
    idx = first + np.arange(length)[None, :] - sps * np.arange(n_sym)[:, None]
    valid = (idx >= 0) & (idx < len(taps))
    return np.where(valid, taps[np.clip(idx, 0, len(taps) - 1)], 0.0)


def _baseband(name: str, n: int, ext: int, cfg: SyntheticModulationConfig, rng: np.random.Generator):
    """``n`` noise-free baseband frames of ``ext`` samples, complex128 [n, ext], no channel yet."""
    sps = cfg.samples_per_symbol
    if name in ANALOG_MODULATIONS:
        return channel.analog_baseband(name, n, ext, rng)
    if name in FSK_MODULATIONS:
        g = _pulse_matrix(fsk_frequency_pulse(name, sps), sps, ext)
        bits = rng.integers(0, 2, size=(n, g.shape[0]))
        freq = (2.0 * bits - 1.0) @ g  # frequency deviation / h, cycles per sample
        # The phase carried in from earlier symbols is a constant, absorbed by the random phase.
        return np.exp(2j * np.pi * FSK_INDEX * np.cumsum(freq, axis=1))
    points = constellation(name)
    g = _pulse_matrix(rrc_taps(sps, cfg.rolloff), sps, ext)
    symbols = points[rng.integers(0, len(points), size=(n, g.shape[0]))]
    return (symbols.real @ g) + 1j * (symbols.imag @ g)


def modulate(name: str, n: int, cfg: SyntheticModulationConfig, rng: np.random.Generator) -> np.ndarray:
    """``n`` noise-free frames with timing, frequency and phase offsets, complex128 [n, L].

    With the channel fields at their defaults, the draws and the arithmetic are those of the
    clean chain, so a default config keeps producing the same frames.
    """
    sps, length = cfg.samples_per_symbol, cfg.frame_length
    # Room to slide the window by the timing offset, to fill the multipath filter, and for a
    # sample clock that runs fast.
    pre = channel.MULTIPATH_FIR_TAPS if cfg.multipath else 0
    drift = math.ceil(length * cfg.max_sro) + 2 if cfg.max_sro > 0 else 0
    ext = length + sps + pre + drift
    baseband = _baseband(name, n, ext, cfg, rng)
    if cfg.multipath:
        fir = channel.multipath_fir(channel.rician_gains(n, cfg.rician_k, rng))
        baseband = channel.apply_fir(baseband, fir)  # its first taps - 1 samples are unfilled: skipped by pre
    offset = rng.integers(0, sps, size=(n, 1))
    if cfg.max_sro > 0:
        positions = channel.sample_positions(n, length, pre + offset, cfg.max_sro, cfg.sro_walk_std, rng)
        frames = channel.interpolate(baseband, positions)
    else:
        frames = np.take_along_axis(baseband, pre + offset + np.arange(length)[None, :], axis=1)
    if cfg.cfo_walk_std > 0:
        return frames * np.exp(1j * channel.carrier_phase(n, length, cfg.max_cfo, cfg.cfo_walk_std, rng))
    cfo = rng.uniform(-cfg.max_cfo, cfg.max_cfo, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    return frames * np.exp(1j * (2 * np.pi * cfo * np.arange(length)[None, :] + phase))


def add_awgn(frames: np.ndarray, snr_db: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Complex white Gaussian noise at ``snr_db`` [n] relative to each frame's measured power.

    ``frames`` complex [n, L]; returns complex128 [n, L]. The noise power is split evenly
    between I and Q.
    """
    power = np.mean(np.abs(frames) ** 2, axis=1, keepdims=True)
    noise_power = power / 10.0 ** (np.asarray(snr_db, dtype=np.float64).reshape(-1, 1) / 10.0)
    iq = rng.standard_normal((2, *frames.shape))
    return frames + np.sqrt(noise_power / 2.0) * (iq[0] + 1j * iq[1])


def _unit_power_iq(frames: np.ndarray) -> np.ndarray:
    """complex [n, L] -> float32 [n, 2, L], each frame scaled to unit average power."""
    frames = frames / np.sqrt(np.mean(np.abs(frames) ** 2, axis=1, keepdims=True))
    return np.stack([frames.real, frames.imag], axis=1).astype(np.float32)


def generate_modulation_dataset(cfg: SyntheticModulationConfig) -> ArrayDataset:
    """Build the whole labelled set: x float32 [N, 2, L], N = classes x SNRs x frames_per_class_snr.

    Frames are ordered by class, then SNR. Same config (seed included) gives byte-identical
    arrays. Each class draws from its own stream seeded by (seed, class), so a class's frames
    do not change when other classes are added or removed. Splits are stratified by
    (class, SNR) via :func:`edgekd.data.splits.assign_splits`.
    """
    cfg.validate()
    snr_per_class = np.repeat(cfg.snr_values(), cfg.frames_per_class_snr)
    xs, ys = [], []
    for label, name in enumerate(cfg.classes):
        rng = np.random.default_rng([cfg.seed, ALL_MODULATIONS.index(name)])
        for start in range(0, len(snr_per_class), _CHUNK):
            snr = snr_per_class[start : start + _CHUNK]
            xs.append(_unit_power_iq(add_awgn(modulate(name, len(snr), cfg, rng), snr, rng)))
        ys.append(np.full(len(snr_per_class), label, dtype=np.int64))
    y = np.concatenate(ys)
    snr = np.tile(snr_per_class, len(cfg.classes))
    return ArrayDataset(
        x=np.concatenate(xs),
        y=y,
        class_names=list(cfg.classes),
        snr=snr,
        split=assign_splits(y, snr, cfg.val_fraction, cfg.test_fraction, cfg.seed),
    )
