"""The synthetic modulation set: shapes, determinism, pulse shaping, SNR, CFO, FSK."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.config import from_dict
from edgekd.data.modulation import (
    FSK_MODULATIONS,
    MODULATIONS,
    SyntheticModulationConfig,
    add_awgn,
    constellation,
    generate_modulation_dataset,
    modulate,
    rrc_taps,
)
from edgekd.errors import ConfigError

LINEAR = [m for m in MODULATIONS if m not in FSK_MODULATIONS]


def _small(**overrides) -> SyntheticModulationConfig:
    base = {"snr_min": -4, "snr_max": 4, "snr_step": 4, "frames_per_class_snr": 6, "frame_length": 64}
    return SyntheticModulationConfig(**{**base, **overrides})


def _complex(x: np.ndarray) -> np.ndarray:
    return x[:, 0].astype(np.float64) + 1j * x[:, 1]


def test_shapes_dtypes_and_every_cell_present():
    cfg = _small()
    ds = generate_modulation_dataset(cfg)
    n = len(MODULATIONS) * 3 * 6
    assert ds.x.shape == (n, 2, 64) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.snr.dtype == np.int16 and ds.split.dtype == np.int8
    assert ds.class_names == list(MODULATIONS)
    assert np.array_equal(cfg.snr_values(), [-4, 0, 4])
    cells, counts = np.unique(np.stack([ds.y, ds.snr], axis=1), axis=0, return_counts=True)
    assert len(cells) == len(MODULATIONS) * 3 and np.all(counts == 6)
    # Normalised after noise: every frame has unit average power.
    np.testing.assert_allclose(np.mean(ds.x.astype(np.float64) ** 2, axis=(1, 2)) * 2, 1.0, rtol=1e-5)
    assert set(np.unique(ds.split)) == {0, 1, 2}


def test_class_order_follows_config():
    ds = generate_modulation_dataset(_small(classes=["QAM16", "BPSK"]))
    assert ds.class_names == ["QAM16", "BPSK"]
    assert np.array_equal(np.unique(ds.y), [0, 1])


def test_same_seed_is_byte_identical_and_other_seed_differs():
    a, b = generate_modulation_dataset(_small(seed=3)), generate_modulation_dataset(_small(seed=3))
    c = generate_modulation_dataset(_small(seed=4))
    assert a.x.tobytes() == b.x.tobytes() and a.split.tobytes() == b.split.tobytes()
    assert np.array_equal(a.y, b.y) and np.array_equal(a.snr, b.snr)
    assert a.x.tobytes() != c.x.tobytes()


def test_class_frames_do_not_depend_on_other_classes():
    alone = generate_modulation_dataset(_small(classes=["BPSK"]))
    mixed = generate_modulation_dataset(_small(classes=["QPSK", "BPSK"]))
    assert np.array_equal(alone.x, mixed.x[mixed.y == 1])


def test_frames_are_not_repeated():
    ds = generate_modulation_dataset(_small())
    assert len({row.tobytes() for row in ds.x}) == len(ds)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"classes": ["QPSk"]}, "did you mean 'QPSK'"),
        ({"classes": []}, "classes is empty"),
        ({"classes": ["BPSK", "BPSK"]}, "twice"),
        ({"snr_min": 10, "snr_max": 0}, "empty SNR range"),
        ({"snr_step": 0}, "snr_step"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "no training data"),
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"frames_per_class_snr": 0}, "frames_per_class_snr"),
        ({"frame_length": -1}, "frame_length"),
        ({"rolloff": 0.0}, "rolloff"),
        ({"max_cfo": 0.7}, "max_cfo"),
    ],
)
def test_bad_config_is_a_config_error(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        SyntheticModulationConfig(**overrides).validate()
    assert fragment in info.value.one_line()


def test_config_from_mapping_rejects_unknown_key():
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(SyntheticModulationConfig, {"frames_per_snr": 3})
    cfg = from_dict(SyntheticModulationConfig, {"classes": ["BPSK"], "snr_min": 0})
    assert cfg.classes == ["BPSK"] and cfg.snr_min == 0


@pytest.mark.parametrize(
    ("name", "size"), [("BPSK", 2), ("QPSK", 4), ("8PSK", 8), ("QAM16", 16), ("QAM64", 64)]
)
def test_constellations_have_unit_power(name, size):
    points = constellation(name)
    assert len(np.unique(np.round(points, 9))) == size
    assert np.mean(np.abs(points) ** 2) == pytest.approx(1.0)


# --- root-raised cosine ---------------------------------------------------------------------


def _rrc_from_spectrum(t: np.ndarray, beta: float, steps: int = 20000) -> np.ndarray:
    """h(t) = 2 ∫ sqrt(RC(f)) cos(2π f t) df, symbol period 1, by the midpoint rule."""
    edge = (1 + beta) / 2
    f = (np.arange(steps) + 0.5) * edge / steps
    rc = np.where(
        f <= (1 - beta) / 2, 1.0, 0.5 * (1 + np.cos(np.pi / beta * (f - (1 - beta) / 2)))
    )  # raised-cosine spectrum
    return (
        2 * np.sum(np.sqrt(rc)[None, :] * np.cos(2 * np.pi * f[None, :] * t[:, None]), axis=1) * edge / steps
    )


@pytest.mark.parametrize("beta", [0.25, 0.35, 0.5, 1.0])
def test_rrc_matches_inverse_fourier_transform(beta):
    # β = 0.25 and 0.5 put a tap exactly on t = ±Ts/(4β) (8 and 4 samples); β = 1 does too (2).
    sps, span = 8, 8
    taps = rrc_taps(sps, beta, span)
    assert taps.shape == (span * sps + 1,)
    assert np.all(np.isfinite(taps))
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)
    assert np.sum(taps**2) == pytest.approx(1.0)
    reference = _rrc_from_spectrum(np.arange(-span * sps // 2, span * sps // 2 + 1) / sps, beta)
    reference /= np.sqrt(np.sum(reference**2))
    np.testing.assert_allclose(taps, reference, atol=2e-5)


@pytest.mark.parametrize("beta", [0.25, 0.35, 0.5])
def test_rrc_pair_is_nyquist(beta):
    sps, span = 8, 16  # a long span so truncation does not mask the ISI-free property
    taps = rrc_taps(sps, beta, span)
    full = np.convolve(taps, taps)
    centre = len(taps) - 1
    assert full[centre] == pytest.approx(1.0)
    at_symbols = full[centre + sps * np.arange(1, span)]
    assert np.max(np.abs(at_symbols)) < 5e-3
    # Between symbol instants the pulse is clearly non-zero: the check above is not vacuous.
    assert np.max(np.abs(full[centre + sps * np.arange(0, 3) + sps // 2])) > 0.1


# --- channel: SNR, CFO, phase, timing --------------------------------------------------------


def test_awgn_power_follows_measured_signal_power():
    cfg = _small(frame_length=256)
    rng = np.random.default_rng(1)
    clean = modulate("QAM16", 400, cfg, rng)
    signal_power = np.mean(np.abs(clean) ** 2, axis=1)
    # Unit-energy taps spread each symbol over sps samples: the power is ~1/sps, not 1,
    # so an SNR that assumed unit power would be 9 dB off.
    assert np.mean(signal_power) == pytest.approx(1 / cfg.samples_per_symbol, rel=0.1)
    for snr_db in (-10.0, 0.0, 12.0):
        noisy = add_awgn(clean, np.full(len(clean), snr_db), rng)
        ratio = np.mean(np.abs(noisy - clean) ** 2, axis=1) / signal_power
        assert np.mean(ratio) == pytest.approx(10 ** (-snr_db / 10), rel=0.03)


def test_snr_label_matches_noise_floor_in_the_generated_frames():
    # The shaped signal lives in |f| < (1 + rolloff) / (2 sps) + max_cfo ≈ 0.094 cycles/sample;
    # the white noise floor seen beyond 0.15 gives the noise power, the frame's unit power the rest.
    cfg = SyntheticModulationConfig(
        classes=LINEAR, snr_min=-4, snr_max=16, snr_step=4, frames_per_class_snr=20
    )
    ds = generate_modulation_dataset(cfg)
    window = np.hanning(cfg.frame_length)
    spectrum = np.abs(np.fft.fft(_complex(ds.x) * window, axis=1)) ** 2
    out_of_band = np.abs(np.fft.fftfreq(cfg.frame_length)) > 0.15
    noise_power = spectrum[:, out_of_band].mean(axis=1) / np.sum(window**2)
    for snr_db in cfg.snr_values():
        n = noise_power[ds.snr == snr_db].mean()
        assert 10 * np.log10((1 - n) / n) == pytest.approx(float(snr_db), abs=1.0)


def _bpsk_squared(max_cfo: float) -> np.ndarray:
    cfg = _small(
        classes=["BPSK"], snr_min=18, snr_max=18, frames_per_class_snr=60, frame_length=128, max_cfo=max_cfo
    )
    # Squaring BPSK removes the ±1 symbols: what is left turns at twice the carrier offset and phase.
    return _complex(generate_modulation_dataset(cfg).x) ** 2


def _cfo_estimate(z: np.ndarray) -> np.ndarray:
    return np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1]), axis=1)) / (4 * np.pi)


def test_cfo_makes_the_phase_drift():
    with_cfo = _cfo_estimate(_bpsk_squared(0.01))
    without = _cfo_estimate(_bpsk_squared(0.0))  # what noise alone does to the estimate
    assert np.std(with_cfo) > 0.004  # uniform on ±0.01 has std 0.0058
    assert np.max(np.abs(with_cfo)) < 0.01 + 0.003
    assert np.max(np.abs(without)) < 0.003 and np.std(without) < 0.001


def test_carrier_phase_is_random():
    z = _bpsk_squared(0.0)
    resultant = np.abs(np.mean(np.exp(1j * np.angle(z.mean(axis=1)))))
    assert resultant < 0.4  # a fixed phase would give 1


def test_cpfsk_and_gfsk_phase_steps():
    cfg = _small(max_cfo=0.0, frame_length=128)
    rng = np.random.default_rng(0)
    cpfsk = modulate("CPFSK", 50, cfg, rng)
    gfsk = modulate("GFSK", 50, cfg, rng)
    np.testing.assert_allclose(np.abs(cpfsk), 1.0)
    np.testing.assert_allclose(np.abs(gfsk), 1.0)
    step = np.pi * 0.5 / cfg.samples_per_symbol  # π h per symbol, spread over sps samples
    cp_steps = np.diff(np.unwrap(np.angle(cpfsk), axis=1), axis=1)
    np.testing.assert_allclose(np.abs(cp_steps), step, atol=1e-9)
    g_steps = np.abs(np.diff(np.unwrap(np.angle(gfsk), axis=1), axis=1))
    assert g_steps.max() <= step + 1e-9 and g_steps.min() < 0.5 * step  # Gaussian pulse smooths the turns
    # CPFSK turns direction only on symbol boundaries; their position in the frame is the timing offset.
    sign_change = np.diff(np.sign(cp_steps), axis=1) != 0
    offsets = {int(np.flatnonzero(row)[0] % cfg.samples_per_symbol) for row in sign_change if row.any()}
    assert len(offsets) >= 4
