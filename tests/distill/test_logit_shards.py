"""The sharded on-disk teacher cache: same values as CachedLogits, digests, resume after a kill."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.distill import logit_shards as ls
from edgekd.distill.teacher_cache import CacheUnusable, compress_logits
from edgekd.errors import ConfigError

VIEWS, FRAMES, K, SHARD = 2, 40, 10, 7  # 6 shards per view, the last one of 5 frames
KEY = "ab" * 32
CPU = torch.device("cpu")


def logits_of(view: int, idx: np.ndarray) -> torch.Tensor:
    """fp32 [b, K]: a pure function of (view, frame), spread over [-6, 6)."""
    seed = (np.asarray(idx, dtype=np.float64)[:, None] * 31 + view * 7 + np.arange(K)) * 12.9898
    return torch.from_numpy((np.sin(seed) * 43758.5453 % 1.0) * 12 - 6).float()


def make_compute(calls: list[tuple[int, int, int]], batch: int = 3):
    """compute() in shuffled batches of ``batch`` frames, recording each (view, start, stop)."""

    def compute(view: int, start: int, stop: int):
        calls.append((view, start, stop))
        order = np.random.default_rng(start + 100 * view).permutation(np.arange(start, stop))
        for i in range(0, len(order), batch):
            yield order[i : i + batch], logits_of(view, order[i : i + batch])

    return compute


def build(folder: Path, storage: str = "fp16", calls=None, compute=None, **kw) -> ls.ShardedLogits:
    compute = compute or make_compute(calls if calls is not None else [])
    args = {"views": VIEWS, "frames": FRAMES, "num_classes": K, "storage": storage, "topk": 3}
    return ls.build_sharded_logits(folder, KEY, compute=compute, shard_frames=SHARD, **{**args, **kw})


def reference(storage: str):
    logits = torch.stack([logits_of(v, np.arange(FRAMES)) for v in range(VIEWS)])
    return compress_logits(logits, storage, 3)


def ranges() -> list[tuple[int, int, int]]:
    return [(v, s, min(s + SHARD, FRAMES)) for v in range(VIEWS) for s in range(0, FRAMES, SHARD)]


@pytest.mark.parametrize("storage", ["fp16", "topk"])
def test_lookup_equals_the_single_file_cache_across_shards_and_after_reopening(tmp_path, storage) -> None:
    calls: list = []
    sharded = build(tmp_path / "c", storage, calls)
    assert sorted(calls) == ranges()  # one call per shard
    ref = reference(storage)
    idx = torch.tensor([39, 0, 6, 7, 7, 13, 14, 35, 34, 6, 20, -1, 21, 0])  # unsorted, repeats, boundaries
    reopened = ls.open_sharded_logits(tmp_path / "c", KEY, VIEWS, FRAMES, K)
    for cache in (sharded, reopened):
        assert (cache.storage, cache.views, cache.frames, cache.num_classes) == (storage, VIEWS, FRAMES, K)
        for view in range(VIEWS):
            assert torch.equal(cache.lookup(idx, view, CPU), ref.lookup(idx, view, CPU))  # bitwise
            assert torch.equal(cache.dense(view), ref.dense(view))
    assert not torch.equal(sharded.dense(0), sharded.dense(1))
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert "index.json" in files and "index.json.json" in files and "progress.json" not in files
    assert len([f for f in files if f.startswith("shard-")]) == len(ranges()) * (
        1 if storage == "fp16" else 3
    )
    with pytest.raises(IndexError):
        sharded.lookup(torch.tensor([FRAMES]), 0, CPU)


def test_a_finished_cache_is_reused_without_computing(tmp_path) -> None:
    build(tmp_path)
    calls: list = []
    again = build(tmp_path, calls=calls)
    assert calls == [] and torch.equal(again.dense(1), reference("fp16").dense(1))


def test_a_corrupt_byte_is_detected_and_only_its_shard_is_rebuilt(tmp_path) -> None:
    build(tmp_path, "topk")
    victim = tmp_path / "shard-1-0000000014.fill.npy"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x40  # same size, same header: only the digest can tell
    victim.write_bytes(bytes(data))
    with pytest.raises(CacheUnusable, match=r"shard-1-0000000014\.fill\.npy does not match its sha256"):
        ls.open_sharded_logits(tmp_path, KEY, VIEWS, FRAMES, K)
    assert ls.open_sharded_logits(tmp_path, KEY, VIEWS, FRAMES, K, verify=False) is not None  # header fine
    calls: list = []
    lines: list[str] = []
    rebuilt = build(tmp_path, "topk", calls, say=lines.append)
    assert calls == [(1, 14, 21)]
    assert any("shard-1-0000000014.fill.npy does not match" in line for line in lines)
    assert torch.equal(rebuilt.dense(1), reference("topk").dense(1))
    assert ls.open_sharded_logits(tmp_path, KEY, VIEWS, FRAMES, K) is not None


def killed_build(folder: str, storage: str, after: int) -> None:
    """Build in this process and SIGKILL it halfway through shard ``after + 1`` (run in a subprocess)."""
    calls: list = []
    inner = make_compute(calls)

    def compute(view, start, stop):
        for n, batch in enumerate(inner(view, start, stop)):
            if len(calls) > after and n == 1:  # a temporary shard file is half written
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    build(Path(folder), storage, compute=compute)


@pytest.mark.parametrize("storage", ["fp16", "topk"])
def test_a_killed_build_resumes_at_the_first_missing_shard(tmp_path, storage) -> None:
    code = (
        "import sys; from tests.distill.test_logit_shards import killed_build; killed_build(*sys.argv[1:], 8)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c"), storage], cwd=root, capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    left = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert "progress.json" in left and "index.json" not in left
    assert any(name.endswith(".tmp") for name in left)  # the shard being written when killed
    assert ls.open_sharded_logits(tmp_path / "c", KEY, VIEWS, FRAMES, K) is None  # not complete

    calls: list = []
    resumed = build(tmp_path / "c", storage, calls)
    assert calls == ranges()[8:]  # only what the killed build had not finished
    whole = build(tmp_path / "whole", storage)
    for view in range(VIEWS):
        assert torch.equal(resumed.dense(view), whole.dense(view))
    for name in (p.name for p in (tmp_path / "whole").glob("shard-*")):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.endswith(".tmp")]


def _skip(compute, drop=None, shift=0, twice=False):
    def wrapped(view, start, stop):
        for idx, logits in compute(view, start, stop):
            keep = idx != drop
            yield idx[keep] + shift, logits[torch.from_numpy(keep)]
            if twice:
                yield idx, logits

    return wrapped


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": 23}, r"never gave 1 frame\(s\) of view 0's range \[21, 28\) \(first: frame 23\)"),
        ({"shift": 1}, r"gave frame 7 for view 0, \[0, 7\)"),
        ({"twice": True}, "gave a frame of view 0 twice"),
    ],
)
def test_missing_extra_or_repeated_rows_raise_naming_the_cache(tmp_path, change, message) -> None:
    with pytest.raises(ls.ShardWriteError, match=message) as err:
        build(tmp_path / "c", compute=_skip(make_compute([]), **change))
    assert str(tmp_path / "c") in str(err.value)
    assert ls.open_sharded_logits(tmp_path / "c", KEY, VIEWS, FRAMES, K) is None
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.endswith(".tmp")]  # nothing half-written


def test_wrong_key_or_shape_is_unusable_and_absent_is_none(tmp_path) -> None:
    assert ls.open_sharded_logits(tmp_path / "nothing", KEY, VIEWS, FRAMES, K) is None
    build(tmp_path)
    with pytest.raises(CacheUnusable, match="key does not match"):
        ls.open_sharded_logits(tmp_path, "cd" * 32, VIEWS, FRAMES, K)
    for shape in ((VIEWS + 1, FRAMES, K), (VIEWS, FRAMES - 1, K), (VIEWS, FRAMES, K + 1)):
        with pytest.raises(CacheUnusable, match="view"):
            ls.open_sharded_logits(tmp_path, KEY, *shape)
    (tmp_path / "shard-0-0000000007.values.npy").unlink()
    with pytest.raises(CacheUnusable, match=r"shard-0-0000000007\.values\.npy is missing"):
        ls.open_sharded_logits(tmp_path, KEY, VIEWS, FRAMES, K)
    calls: list = []
    build(tmp_path, calls=calls)  # rebuilds the missing shard only
    assert calls == [(0, 7, 14)]
    assert ls.sharded_cache_dir("/c", KEY) == Path("/c") / f"teacher-logits-{KEY[:24]}"


def test_other_settings_in_the_same_folder_start_again(tmp_path) -> None:
    build(tmp_path, "fp16")
    calls: list = []
    lines: list[str] = []
    topk = build(tmp_path, "topk", calls, say=lines.append)  # same key in a test: settings differ
    assert sorted(calls) == ranges() and any("other settings" in line for line in lines)
    assert topk.storage == "topk" and not list(tmp_path.glob("*.tmp"))
    assert torch.equal(topk.dense(0), reference("topk").dense(0))


def test_pickles_without_its_memory_maps(tmp_path) -> None:
    cache = build(tmp_path, "topk")
    expected = cache.lookup(torch.arange(FRAMES), 1, CPU)  # every shard of view 1 is mapped now
    blob = pickle.dumps(cache)
    assert len(blob) < 4000  # the logits are 40 x 2 x (3 x 2 + 3 x 2 + 4) bytes; no shard is in there
    assert torch.equal(pickle.loads(blob).lookup(torch.arange(FRAMES), 1, CPU), expected)


def test_bad_settings_and_values_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cache_topk 10 must keep 1 to 9"):
        build(tmp_path, "topk", topk=10)
    with pytest.raises(ConfigError, match="cache_storage 'int8'"):
        build(tmp_path, "int8")
    with pytest.raises(ConfigError, match="shard_frames"):
        ls.build_sharded_logits(
            tmp_path,
            KEY,
            views=1,
            frames=3,
            num_classes=K,
            storage="fp16",
            topk=0,
            compute=None,
            shard_frames=0,
        )

    def nan(view, start, stop):
        yield np.arange(start, stop), torch.full((stop - start, K), float("nan"))

    with pytest.raises(ConfigError, match="NaN"):
        build(tmp_path, compute=nan)
