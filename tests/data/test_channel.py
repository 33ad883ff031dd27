"""Analog sources, channel impairments and the RadioML-2016-like preset of the generator."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import channel
from edgekd.data.modulation import (
    MODULATIONS,
    RML2016_CLASSES,
    SyntheticModulationConfig,
    generate_modulation_dataset,
    modulate,
    rml2016_config,
)
from edgekd.errors import ConfigError


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _power_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.fftfreq(x.shape[1]), np.mean(np.abs(np.fft.fft(x, axis=1)) ** 2, axis=0)


def test_audio_is_band_limited_zero_mean_and_peak_normalised():
    audio = channel.band_limited_noise(50, 256, 0.05, _rng())
    assert audio.shape == (50, 256) and np.isrealobj(audio)
    np.testing.assert_allclose(np.max(np.abs(audio), axis=1), 1.0)
    freqs, power = _power_spectrum(audio)
    assert power[np.abs(freqs) > 0.05].max() < 1e-20 * power.max() + 1e-20
    assert power[(np.abs(freqs) > 0) & (np.abs(freqs) < 0.05)].min() > 0
    np.testing.assert_allclose(audio.mean(axis=1), 0.0, atol=1e-12)


def test_am_dsb_keeps_a_carrier_am_ssb_one_sideband_wbfm_constant_envelope():
    dsb = channel.analog_baseband("AM-DSB", 40, 256, _rng(1))
    freqs, power = _power_spectrum(dsb)
    assert power[0] > 0.5 * power.sum()  # the carrier holds most of the power
    assert np.all(dsb.real >= 0) and np.allclose(dsb.imag, 0)  # depth <= 1: no overmodulation

    ssb = channel.analog_baseband("AM-SSB", 40, 256, _rng(2))
    freqs, power = _power_spectrum(ssb)
    assert power[freqs < 0].sum() < 1e-20 * power.sum()
    assert power[freqs > 0].sum() > 0.99 * power.sum()

    fm = channel.analog_baseband("WBFM", 40, 256, _rng(3))
    np.testing.assert_allclose(np.abs(fm), 1.0)
    inst_freq = np.angle(fm[:, 1:] * np.conj(fm[:, :-1])) / (2 * np.pi)
    assert np.abs(inst_freq).max() <= channel.WBFM_DEVIATION + 1e-9
    assert np.abs(inst_freq).max() > 0.9 * channel.WBFM_DEVIATION  # the audio peak reaches it


def test_bounded_walk_moves_but_stays_inside_the_band():
    start = np.linspace(-0.01, 0.01, 64)[:, None]
    walk = channel.bounded_walk(start, 1e-3, 0.01, 500, _rng())
    assert np.abs(walk).max() <= 0.01 + 1e-15
    assert np.all(np.std(walk, axis=1) > 1e-4)
    still = channel.bounded_walk(start, 0.0, 0.01, 20, _rng())
    np.testing.assert_allclose(still, np.repeat(start, 20, axis=1))


def test_sample_positions_and_linear_interpolation():
    start = np.array([[0.0], [3.0]])
    plain = channel.sample_positions(2, 10, start, 0.0, 0.0, _rng())
    np.testing.assert_allclose(plain, start + np.arange(10))
    drift = channel.sample_positions(2, 200, start, 1e-3, 1e-5, _rng())
    steps = np.diff(drift, axis=1)
    assert np.all(np.abs(steps - 1) <= 1e-3 + 1e-15) and np.ptp(steps) > 0
    line = np.arange(300, dtype=np.float64)[None, :] * (2 + 1j) + 5
    np.testing.assert_allclose(channel.interpolate(np.repeat(line, 2, 0), drift), drift * (2 + 1j) + 5)


def test_multipath_fir_realises_each_fractional_delay():
    centre = channel.MULTIPATH_FIR_TAPS // 2 - 1
    n = np.arange(400)
    tone = np.exp(2j * np.pi * 0.02 * n)[None, :]
    for i, delay in enumerate(channel.MULTIPATH_DELAYS):
        gains = np.zeros((1, 3), dtype=np.complex128)
        gains[0, i] = 1.0
        out = channel.apply_fir(tone, channel.multipath_fir(gains))
        expected = np.exp(2j * np.pi * 0.02 * (n - centre - delay))
        np.testing.assert_allclose(out[0, 50:], expected[50:], atol=2e-2)


def test_rician_taps_have_the_magnitude_profile_and_los_share():
    gains = channel.rician_gains(20000, 4.0, _rng())
    power = np.mean(np.abs(gains) ** 2, axis=0)
    np.testing.assert_allclose(power, np.square(channel.MULTIPATH_MAGNITUDES), rtol=0.03)
    # Rician moments: E|h|^4 / (E|h|^2)^2 = (2 + 4K + K^2) / (K + 1)^2 = 1.36 at K = 4 (Rayleigh: 2).
    ratio = np.mean(np.abs(gains) ** 4, axis=0) / power**2
    np.testing.assert_allclose(ratio, (2 + 16 + 16) / 25, rtol=0.03)


def test_carrier_phase_frequency_stays_within_max_cfo():
    phase = channel.carrier_phase(30, 300, 0.01, 2e-4, _rng())
    freq = np.diff(phase, axis=1) / (2 * np.pi)
    assert np.abs(freq).max() <= 0.01 + 1e-12 and np.all(np.ptp(freq, axis=1) > 0)


def test_rml2016_preset_names_the_files_classes_and_generates():
    # The 11 keys of the published RadioML 2016.10a file, written out independently.
    file_classes = [
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
    ]
    assert sorted(RML2016_CLASSES) == file_classes
    cfg = rml2016_config(snr_min=0, snr_max=10, snr_step=10, frames_per_class_snr=6, frame_length=128)
    ds = generate_modulation_dataset(cfg)
    assert ds.class_names == list(RML2016_CLASSES) and ds.x.shape == (11 * 2 * 6, 2, 128)
    assert np.isfinite(ds.x).all()
    np.testing.assert_allclose(np.mean(ds.x.astype(np.float64) ** 2, axis=(1, 2)) * 2, 1.0, rtol=1e-5)
    again = generate_modulation_dataset(cfg)
    assert ds.x.tobytes() == again.x.tobytes()
    alone = generate_modulation_dataset(rml2016_config(**{**_fields(cfg), "classes": ["WBFM"]}))
    np.testing.assert_array_equal(alone.x, ds.x[ds.y == ds.class_names.index("WBFM")])


def _fields(cfg: SyntheticModulationConfig) -> dict:
    return {k: getattr(cfg, k) for k in ("snr_min", "snr_max", "snr_step", "frames_per_class_snr")}


def test_channel_changes_frames_only_when_switched_on():
    base = SyntheticModulationConfig(frame_length=64)
    clean = modulate("QPSK", 8, base, _rng(5))
    assert np.array_equal(clean, modulate("QPSK", 8, SyntheticModulationConfig(frame_length=64), _rng(5)))
    for field, value in (("multipath", True), ("max_sro", 1e-3), ("cfo_walk_std", 1e-4)):
        cfg = SyntheticModulationConfig(frame_length=64, **{field: value})
        out = modulate("QPSK", 8, cfg, _rng(5))
        assert out.shape == clean.shape and not np.allclose(out, clean), field


def test_default_classes_are_unchanged_and_new_names_are_selectable():
    assert SyntheticModulationConfig().classes == list(MODULATIONS) and len(MODULATIONS) == 8
    SyntheticModulationConfig(classes=["AM-DSB", "AM-SSB", "WBFM"]).validate()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"classes": ["AM_DSB"]}, "did you mean 'AM-DSB'"),
        ({"cfo_walk_std": -1e-3}, "cfo_walk_std"),
        ({"max_sro": 0.5}, "max_sro"),
        ({"rician_k": -1.0}, "rician_k"),
    ],
)
def test_bad_channel_config(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        SyntheticModulationConfig(**overrides).validate()
    assert fragment in info.value.one_line()
