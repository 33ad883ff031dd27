"""edgekd: distil a large network into a small, fast, verified model on an edge device."""

__version__ = "0.1.0"
