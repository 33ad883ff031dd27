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
- ``validate``: the checks every loader runs on what it read (finite frames, labels, splits).

Nothing is imported here so that ``import edgekd.data`` stays cheap; import the submodules.
"""
