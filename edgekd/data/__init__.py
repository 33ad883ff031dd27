"""Datasets and what is drawn from them.

- ``dataset``: ArrayDataset (x [N, C, L], y, class names, SNR, split) and its npz format.
- ``modulation``: the synthetic RadioML-style modulation-recognition generator
  (``channel``: its analog sources and channel impairments).
- ``rml2016``: RadioML 2016 pickles through a restricted unpickler.
- ``rml2018``: RadioML 2018 HDF5, streamed with h5py.
- ``images``: image folders (OCT-style layouts), transforms, seed-pure augmentation.
- ``sources``: ``DataSpec`` (a recipe's data section) and ``load_dataset`` over every source.
- ``splits``: deterministic train/val/test splits stratified by (class, SNR).
- ``calibration``: reproducible, hashed selection of INT8 calibration frames.
- ``mapstyle``: the map-style dataset contract every training source meets (``dataset[i]`` is
  ``(x tensor, y)``, ``dataset[(i, epoch)]`` a seed-pure training view), ``MemoryDataset``,
  ``sample_rng(seed, epoch, index)``.
- ``lazy_images``, ``lazy_rml2018``, ``lazy_arrays``: the same contract read one sample at a
  time (image files decoded in DataLoader workers and their uint8 cache, HDF5 rows, memory-mapped
  npz/.npy); ``storage``: in memory or lazy by size (``open_map_dataset``, ``choose_storage``).
- ``samplers``: epoch orders that are pure functions of (seed, epoch), chunk-aware batches.
- ``validate``: the checks every loader runs on what it read (finite frames, labels, splits).

Nothing is imported here so that ``import edgekd.data`` stays cheap; import the submodules.
"""
