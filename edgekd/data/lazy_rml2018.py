"""RadioML 2018 HDF5 as a map-style dataset: frames read by index, never the whole file.

:class:`RML2018Dataset` chooses its frames as :func:`edgekd.data.rml2018.materialize_rml2018`
does (same classes, SNRs, per-cell cap, relabelling and splits, one shared definition:
:func:`edgekd.data.rml2018.label_subset`) and reads each frame of X [N, 1024, 2] when it
is asked for, transposed to float32 [2, 1024]. Labels come from the one-hot Y and SNRs from
Z, read (and checked) once at open: 10 bytes per frame, 25 MB for the 2.5 million frames of
the full file.

The h5py handle is opened lazily in each process that reads (a DataLoader worker opens its
own after the fork; a handle is never pickled), and the opening process closes its handle
once the labels are read, so forked workers inherit none.

Read whole batches through ``DataLoader(dataset, batch_sampler=chunk_batches(dataset, ...))``
(:func:`edgekd.data.samplers.chunk_batches`):
the sampler keeps each batch to a few runs of consecutive rows aligned to the file's HDF5
chunks, and the DataLoader hands the batch to ``__getitems__``, which reads each run with one
slice.
"""

from __future__ import annotations

import os

import numpy as np

from edgekd.data.mapstyle import Augment, MapDataset
from edgekd.data.rml2018 import RML2018Selection, label_subset


class RML2018Dataset(MapDataset):
    """Frames of a RadioML 2018 file: ``dataset[i]`` is (float32 tensor [2, L], class id).

    Args:
        path: the ``.hdf5`` file (X [N, L, 2], Y one-hot [N, K], Z [N, 1]).
        selection: the frames, labels and splits, as :func:`edgekd.data.rml2018.materialize_rml2018`
            chooses them.
        augment, augment_seed: the training views (see :mod:`edgekd.data.mapstyle`).

    Attributes beyond the contract: ``rows`` (the row of X of each frame, ascending),
    ``chunk_rows`` (rows per HDF5 chunk of X; 1 when X is stored contiguously).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        selection: RML2018Selection | None = None,
        *,
        augment: Augment | None = None,
        augment_seed: int = 0,
    ) -> None:
        selection = selection or RML2018Selection()
        frames = selection.open(path)
        try:
            chosen = label_subset(frames, selection)
        finally:
            frames.close()  # reopened by whichever process reads; forked workers inherit no handle
        super().__init__(
            rows=chosen.rows,
            y=chosen.y,
            class_names=chosen.class_names,
            input_shape=frames.input_shape,
            snr=chosen.snr,
            split=chosen.split,
            source=f"RadioML 2018 file {frames.path}",
            augment=augment,
            augment_seed=augment_seed,
        )
        self.path = frames.path
        self.chunk_rows = frames.chunk_rows
        self._frames = frames

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self._frames.read(rows)  # checks every frame read for NaN/Inf

    def close(self) -> None:
        """Close this process's file handle (the next read reopens it)."""
        self._frames.close()
