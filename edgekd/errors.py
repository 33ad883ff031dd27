"""Error hierarchy: every user mistake becomes one line and an exit code.

Exit codes are an interface (see README): 0 success, 1 a check failed (gate),
2 bad input or configuration, anything else an internal error.
"""

from __future__ import annotations


class EdgeKDError(Exception):
    """A problem the user can fix. Printed as one line: ``what is wrong (fix: how)``."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        # A library caller's uncaught error shows the fix too, not the message alone.
        return self.one_line()

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f" (fix: {self.hint.rstrip('.')})"
        return " ".join(text.split())


class ConfigError(EdgeKDError):
    """Malformed YAML, unknown key, wrong type, unknown name."""


class InputFileError(EdgeKDError):
    """A file that is missing, unreadable or not what it claims to be."""


class ShapeError(EdgeKDError):
    """Data whose shape does not fit the model."""


class RuntimeUnavailable(EdgeKDError):
    """A runtime (TensorRT, OpenVINO, ...) that is not installed or cannot run here."""


class ParityError(EdgeKDError):
    """An exported or quantized model whose outputs disagree with its reference."""


class GateFailed(EdgeKDError):
    """A budget was broken: exit 1, not a user mistake."""

    exit_code = 1
