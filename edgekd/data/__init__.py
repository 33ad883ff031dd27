"""Datasets and what is drawn from them.

- ``dataset``: ArrayDataset (x [N, C, L], y, class names, SNR, split) and its npz format.
- ``modulation``: the synthetic RadioML-style modulation-recognition generator.
- ``splits``: deterministic train/val/test splits stratified by (class, SNR).
- ``calibration``: reproducible, hashed selection of INT8 calibration frames.

Nothing is imported here so that ``import edgekd.data`` stays cheap; import the submodules.
"""
