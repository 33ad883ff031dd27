"""Analog sources and channel impairments for the synthetic modulation set (numpy, vectorised).

Everything works on a batch of frames, complex or real ``[n, L]``, and draws from the
generator it is given, so a frame stream is reproducible from the seed.

Analog classes (RadioML 2016's AM-DSB, AM-SSB, WBFM) modulate a band-limited random
"audio" process: white Gaussian noise low-passed in the frequency domain, normalised to a
peak of 1 per frame. Frequencies are in cycles/sample of the complex baseband.

Channel (after GNU Radio's dynamic channel model that RadioML 2016 used):

* sample-rate offset: the receiver samples the waveform at times that drift by a relative
  rate offset that random-walks inside ``±max_sro`` (linear interpolation between samples;
  at 8 samples per symbol the signal is smooth enough for it);
* multipath: 3 taps at fractional delays (0, 0.9, 1.7 samples) with magnitudes (1, 0.8, 0.3),
  each a Rician-faded gain (K-factor ``rician_k``: a fixed line-of-sight part plus a
  complex Gaussian scattered part), static over one short frame; fractional delays through
  a windowed-sinc interpolator;
* carrier offset: a frequency that random-walks inside ``±max_cfo``, integrated into phase.
"""

from __future__ import annotations

import numpy as np

ANALOG_MODULATIONS = ("AM-DSB", "AM-SSB", "WBFM")
AUDIO_BANDWIDTH = {"AM-DSB": 0.02, "AM-SSB": 0.02, "WBFM": 0.05}  # cycles/sample
WBFM_DEVIATION = 0.2  # peak frequency deviation, cycles/sample (75 kHz at a 375 kHz rate)
AM_INDEX_RANGE = (0.5, 1.0)  # modulation depth of AM-DSB, drawn per frame
MULTIPATH_DELAYS = (0.0, 0.9, 1.7)  # samples
MULTIPATH_MAGNITUDES = (1.0, 0.8, 0.3)
MULTIPATH_FIR_TAPS = 8  # windowed-sinc taps that realise the fractional delays


def band_limited_noise(n: int, length: int, bandwidth: float, rng: np.random.Generator) -> np.ndarray:
    """Real random "audio" float64 [n, length]: white noise with no power above ``bandwidth``.

    Each frame is scaled to a peak magnitude of 1.
    """
    spectrum = np.fft.rfft(rng.standard_normal((n, length)), axis=1)
    freqs = np.fft.rfftfreq(length)
    spectrum[:, freqs > bandwidth] = 0.0
    spectrum[:, 0] = 0.0  # no DC: audio is zero-mean, and AM's carrier must stay the only tone
    audio = np.fft.irfft(spectrum, n=length, axis=1)
    return audio / np.maximum(np.max(np.abs(audio), axis=1, keepdims=True), 1e-12)


def analytic(x: np.ndarray) -> np.ndarray:
    """Analytic signal of real ``x`` [n, L]: x + j·Hilbert(x), only non-negative frequencies."""
    length = x.shape[1]
    weights = np.zeros(length)
    weights[0] = 1.0
    weights[1 : (length + 1) // 2] = 2.0
    if length % 2 == 0:
        weights[length // 2] = 1.0
    return np.fft.ifft(np.fft.fft(x, axis=1) * weights, axis=1)


def analog_baseband(name: str, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` analog-modulated frames, complex128 [n, length], before any channel effect.

    AM-DSB: ``1 + μ m`` (full carrier, μ uniform in :data:`AM_INDEX_RANGE`); AM-SSB: the
    upper sideband ``m + j·H{m}`` (suppressed carrier); WBFM: phase ``2π Δf Σ m``.
    """
    audio = band_limited_noise(n, length, AUDIO_BANDWIDTH[name], rng)
    if name == "AM-DSB":
        depth = rng.uniform(*AM_INDEX_RANGE, size=(n, 1))
        return (1.0 + depth * audio).astype(np.complex128)
    if name == "AM-SSB":
        return analytic(audio)
    if name == "WBFM":
        return np.exp(2j * np.pi * WBFM_DEVIATION * np.cumsum(audio, axis=1))
    raise ValueError(f"{name!r} is not an analog modulation")


def bounded_walk(start: np.ndarray, step_std: float, bound: float, length: int, rng: np.random.Generator):
    """Random walks float64 [n, length] from ``start`` [n, 1], steps N(0, step_std), held in ±bound.

    A step that would leave the band is reflected back into it, so the walk neither sticks to
    the edge nor leaves it.
    """
    walk = start + np.cumsum(rng.normal(0.0, step_std, size=(len(start), length)), axis=1)
    if bound <= 0:
        return np.zeros_like(walk)
    period = 4.0 * bound  # fold onto a triangle wave: reflection at ±bound
    folded = np.mod(walk + bound, period)
    return np.where(folded <= 2 * bound, folded, period - folded) - bound


def sample_positions(
    n: int, length: int, start: np.ndarray, max_sro: float, sro_walk_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Sampling instants float64 [n, length] under a drifting rate offset (in samples of the source).

    The rate offset starts uniform in ``±max_sro`` and random-walks with ``sro_walk_std`` per
    sample; instant k is ``start + Σ_{i<k} (1 + ε_i)``.
    """
    eps0 = rng.uniform(-max_sro, max_sro, size=(n, 1))
    eps = bounded_walk(eps0, sro_walk_std, max_sro, length, rng)
    steps = np.concatenate([np.zeros((n, 1)), np.cumsum(1.0 + eps[:, :-1], axis=1)], axis=1)
    return start + steps


def interpolate(signal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``signal`` [n, M] at fractional ``positions`` [n, L] (in range)."""
    base = np.floor(positions).astype(np.int64)
    frac = positions - base
    left = np.take_along_axis(signal, base, axis=1)
    right = np.take_along_axis(signal, np.minimum(base + 1, signal.shape[1] - 1), axis=1)
    return left + frac * (right - left)


def rician_gains(n: int, k_factor: float, rng: np.random.Generator) -> np.ndarray:
    """Complex tap gains [n, taps]: magnitude profile x (LOS + scattered), unit mean power per tap."""
    mags = np.asarray(MULTIPATH_MAGNITUDES)
    los = np.sqrt(k_factor / (k_factor + 1.0)) * np.exp(1j * rng.uniform(0, 2 * np.pi, size=(n, len(mags))))
    iq = rng.standard_normal((2, n, len(mags)))
    scatter = np.sqrt(1.0 / (2.0 * (k_factor + 1.0))) * (iq[0] + 1j * iq[1])
    return mags * (los + scatter)


def multipath_fir(gains: np.ndarray) -> np.ndarray:
    """Per-frame FIR complex [n, MULTIPATH_FIR_TAPS]: tap gains placed at fractional delays.

    Delay d becomes a Hann-windowed sinc centred on d + (taps/2 - 1), so the filter is causal
    with a group delay of ``taps/2 - 1`` samples that the caller compensates.
    """
    m = np.arange(MULTIPATH_FIR_TAPS)
    centre = MULTIPATH_FIR_TAPS // 2 - 1
    delays = np.asarray(MULTIPATH_DELAYS)[:, None]
    t = m[None, :] - centre - delays  # samples from each tap's delay
    half = MULTIPATH_FIR_TAPS / 2
    window = np.where(np.abs(t) < half, 0.5 + 0.5 * np.cos(np.pi * t / half), 0.0)
    kernels = np.sinc(t) * window  # [taps, FIR]
    return gains @ kernels


def apply_fir(signal: np.ndarray, fir: np.ndarray) -> np.ndarray:
    """Causal per-frame filtering: out[:, j] = Σ_m fir[:, m] signal[:, j - m]; the first
    ``taps - 1`` outputs (filter not yet filled) are zero."""
    out = np.zeros_like(signal, dtype=np.complex128)
    for m in range(fir.shape[1]):
        out[:, m:] += fir[:, m : m + 1] * signal[:, : signal.shape[1] - m]
    return out


def carrier_phase(
    n: int, length: int, max_cfo: float, walk_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Phase float64 [n, length]: a random start phase plus the integral of a random-walk CFO."""
    cfo0 = rng.uniform(-max_cfo, max_cfo, size=(n, 1))
    phase0 = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    freq = bounded_walk(cfo0, walk_std, max_cfo, length, rng)
    cycles = np.concatenate([np.zeros((n, 1)), np.cumsum(freq[:, :-1], axis=1)], axis=1)
    return phase0 + 2 * np.pi * cycles
