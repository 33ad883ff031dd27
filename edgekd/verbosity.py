"""Process-wide verbosity: ``-v/--verbose`` (or ``EDGEKD_VERBOSE=1``) lets the runtimes speak.

By default edgekd mutes the chatter of the libraries it drives (ONNX Runtime's quantizer,
NNCF's progress bars, exporter warnings) so a terminal shows edgekd's own progress lines.
Verbose mode lets those through, for the day a conversion misbehaves and the runtime's
own words are the clue. The CLI sets it once; library callers may set it too.
"""

from __future__ import annotations

import logging
import os

_verbose = False
_TRUE = ("1", "true", "yes", "on")
_handler: logging.Handler | None = None  # the stderr handler verbose mode added to the root logger
_previous_level = logging.WARNING


def set_verbose(on: bool = True) -> None:
    """Turn verbose mode on (INFO logs of every library on stderr) or back off.

    The CLI turns it off again when the command ends, so a process that runs several
    commands (tests, notebooks) does not stay verbose.
    """
    global _verbose, _handler, _previous_level
    _verbose = on
    root = logging.getLogger()
    if on and _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(_handler)
        _previous_level = root.level
        root.setLevel(logging.INFO)
    elif not on and _handler is not None:
        root.removeHandler(_handler)
        root.setLevel(_previous_level)
        _handler = None


def is_verbose() -> bool:
    """True after :func:`set_verbose` or with ``EDGEKD_VERBOSE`` set to 1/true/yes/on."""
    return _verbose or os.environ.get("EDGEKD_VERBOSE", "").strip().lower() in _TRUE
