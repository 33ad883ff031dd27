"""RadioML 2016 pickles: real layouts (Python 2 and 3 protocols) load; malicious ones are refused."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from edgekd.data.rml2016 import load_rml2016, read_rml2016_pickle, restricted_loads
from edgekd.errors import ConfigError, InputFileError


def _frames(seed: int, n: int = 6, length: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2, length)).astype(np.float32)


def _table() -> dict[tuple[str, int], np.ndarray]:
    table = {}
    for i, mod in enumerate(("QPSK", "BPSK", "WBFM")):
        for j, snr in enumerate((-4, 0, 18)):
            table[(mod, snr)] = _frames(10 * i + j)
    return table


def _py2_array(arr: np.ndarray) -> bytes:
    """Opcodes a Python 2 numpy writes for an array at protocol 2: py2 ``str`` is SHORT_BINSTRING."""
    assert arr.dtype == np.float32 and arr.ndim == 3
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in arr.shape) + b"t"
    dtype = b"cnumpy\ndtype\nU\x02f4\x89\x88\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    raw = arr.tobytes()
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01"
        + shape
        + dtype
        + b"\x89T"
        + struct.pack("<I", len(raw))
        + raw
        + b"tb"
    )


def _py2_pickle(table: dict[tuple[str, int], np.ndarray]) -> bytes:
    body = b"".join(
        b"U" + bytes([len(mod)]) + mod.encode() + b"J" + struct.pack("<i", snr) + b"\x86" + _py2_array(arr)
        for (mod, snr), arr in table.items()
    )
    return b"\x80\x02}(" + body + b"u."


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_reads_every_protocol_the_format_is_found_in(tmp_path, protocol):
    table = _table()
    blob = _py2_pickle(table) if protocol == "py2" else pickle.dumps(table, protocol=protocol)
    path = tmp_path / "rml.pkl"
    path.write_bytes(blob)
    read = read_rml2016_pickle(path)
    assert set(read) == set(table)
    for key, arr in table.items():
        assert read[key].dtype == np.float32
        np.testing.assert_array_equal(read[key], arr)


def test_dataset_order_labels_snr_and_split(tmp_path):
    table = _table()
    path = tmp_path / "rml.pkl"
    path.write_bytes(pickle.dumps(table, protocol=2))
    ds = load_rml2016(path, seed=1, classes=["BPSK", "QPSK", "WBFM"])  # sorted: the order before #20
    assert ds.class_names == ["BPSK", "QPSK", "WBFM"]
    assert ds.x.shape == (54, 2, 16) and ds.input_shape == (2, 16)
    np.testing.assert_array_equal(ds.x[:6], table[("BPSK", -4)])
    np.testing.assert_array_equal(ds.x[12:18], table[("BPSK", 18)])
    assert list(ds.snr[:18]) == [-4] * 6 + [0] * 6 + [18] * 6
    # Every (class, SNR) cell of 6 is cut 4/1/1 by the default 0.1/0.2 fractions (rounded).
    for label in range(3):
        for snr in (-4, 0, 18):
            cell = ds.split[(ds.y == label) & (ds.snr == snr)]
            assert sorted(np.bincount(cell, minlength=3)) == [1, 1, 4]
    assert np.array_equal(load_rml2016(path, seed=1).split, ds.split)

    chosen = load_rml2016(path, classes=["WBFM", "QPSK"], snrs=[0, 18])
    assert chosen.class_names == ["WBFM", "QPSK"] and len(chosen) == 24
    np.testing.assert_array_equal(chosen.x[:6], table[("WBFM", 0)])
    assert set(chosen.snr.tolist()) == {0, 18}


def test_unknown_class_is_a_config_error_with_suggestion(tmp_path):
    path = tmp_path / "rml.pkl"
    path.write_bytes(pickle.dumps(_table()))
    with pytest.raises(ConfigError) as info:
        load_rml2016(path, classes=["QPSk"])
    assert "did you mean 'QPSK'" in info.value.one_line()


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "value", "key"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = _Exploit(str(marker))
    payload = {"top": evil, "value": {("QPSK", 0): evil}, "key": {("QPSK", evil): _frames(0)}}[where]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(InputFileError) as info:
        read_rml2016_pickle(path)
    line = info.value.one_line()
    assert "refused" in line and "system is not allowed" in line and "\n" not in line
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob",
    [
        pickle.dumps(eval, protocol=2),  # builtins.eval
        pickle.dumps(np.load, protocol=4),  # a numpy function that is not array reconstruction
        b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.",  # other codec
    ],
)
def test_other_globals_are_refused(blob):
    with pytest.raises(InputFileError, match="refused"):
        restricted_loads(blob)


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (b"not a pickle", "not a readable pickle"),
        # np.ndarray called from the stream with a forged shape of 2^62 elements.
        (b"\x80\x02cnumpy\nndarray\nJ\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x86\x85R.", "not a readable pickle"),
        (pickle.dumps([1, 2, 3]), "not a non-empty dict"),
        (pickle.dumps({"QPSK": np.zeros((2, 2, 4), np.float32)}), "expected (modulation, snr)"),
        (pickle.dumps({("QPSK", 0): np.zeros((2, 3, 4), np.float32)}), "expected [n, 2, L]"),
        (
            pickle.dumps(
                {("A", 0): np.zeros((1, 2, 4), np.float32), ("B", 0): np.zeros((1, 2, 8), np.float32)}
            ),
            "length 8",
        ),
    ],
)
def test_wrong_content_is_an_input_file_error(tmp_path, blob, fragment):
    path = tmp_path / "bad.pkl"
    path.write_bytes(blob)
    with pytest.raises(InputFileError) as info:
        read_rml2016_pickle(path)
    assert fragment in info.value.one_line()


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_rml2016(tmp_path / "none.pkl")


def _with_entry(value) -> dict:
    table = _table()
    table[("BPSK", 0)] = value
    return table


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (
            _with_entry(
                np.where(np.arange(6 * 2 * 16).reshape(6, 2, 16) == 40, np.nan, 0).astype(np.float32)
            ),
            "entry ('BPSK', 0) holds NaN or infinite values (first at frame 1)",
        ),
        (_with_entry(np.full((6, 2, 16), np.inf, np.float32)), "NaN or infinite"),
        (_with_entry(np.zeros((6, 2, 16), np.complex64)), "holds complex numbers"),
        (_with_entry(np.full((6, 2, 16), "a")), "holds strings"),
        (_with_entry(np.zeros((0, 2, 16), np.float32)), "holds no frames"),
        (_with_entry([[0.0] * 16] * 2), "has shape list"),
        ({("A", 0): np.zeros((3, 2, 0), np.float32), ("B", 0): np.zeros((3, 2, 0), np.float32)}, "no frames"),
        ({("A", True): _frames(0)}, "expected (modulation, snr)"),
        ({("A", 0.5): _frames(0)}, "expected (modulation, snr)"),
        ({("", 0): _frames(0)}, "modulation name ''"),
        ({("A", 10**6): _frames(0)}, "SNR out of range"),
        ({("A", 0): _frames(0), (b"A", 0): _frames(1)}, "twice"),
    ],
)
def test_bad_entries_are_refused_naming_the_file_and_entry(tmp_path, payload, fragment):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(InputFileError) as info:
        read_rml2016_pickle(path)
    assert str(path) in info.value.one_line() and fragment in info.value.one_line()


def test_truncated_and_amplifying_pickles_are_refused(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(_table(), protocol=2)[:1500])
    with pytest.raises(InputFileError, match="not a readable pickle"):
        read_rml2016_pickle(path)
    # One array referenced by 50 keys (pickle memo): 50x the data the file holds.
    shared = _frames(0, n=100)
    path.write_bytes(pickle.dumps({("A", s): shared for s in range(50)}, protocol=2))
    with pytest.raises(InputFileError, match="more than the file holds"):
        read_rml2016_pickle(path)


def test_a_file_bigger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from edgekd.data import validate

    path = tmp_path / "rml.pkl"
    path.write_bytes(pickle.dumps(_table(), protocol=2))
    monkeypatch.setattr(validate, "physical_memory", lambda: path.stat().st_size)
    with pytest.raises(InputFileError, match="would take"):
        read_rml2016_pickle(path)
