"""The one small error hierarchy of breastai.

Library code raises these; ``breastai.cli`` turns each into one red line on stderr and the exit
code stored on the class (1 for input, weights and output problems; 2 for usage errors). Any
other exception escaping the library is a bug.

Messages follow one rule: say what was expected, what was found, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AmbiguousStudyError",
    "BreastAIError",
    "ChecksumMismatchError",
    "ClusterError",
    "DeviceUnavailableError",
    "InconsistentGeometryError",
    "InputError",
    "NoDCESeriesError",
    "OutputError",
    "OutputExistsError",
    "PacsAuthError",
    "PacsError",
    "PacsUnavailableError",
    "ParameterError",
    "UnsupportedInputError",
    "WeightsError",
    "WeightsNotFoundError",
]


class BreastAIError(Exception):
    """Base class of every error a user can act on. ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


class ParameterError(BreastAIError, ValueError):
    """A parameter is out of range or not one of the allowed values (a usage error)."""

    exit_code = 2


class InputError(BreastAIError):
    """The input study, image or mask cannot be used as it is."""


class NoDCESeriesError(InputError):
    """No DCE acquisition (at least two phases sharing one geometry) was found."""


class AmbiguousStudyError(InputError):
    """Several candidate DCE acquisitions score alike; the user must choose one.

    ``candidates`` holds one human-readable line per candidate, best first.
    """

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


class InconsistentGeometryError(InputError):
    """Slices or phases do not form one regular grid (missing slices, tilt, mixed sizes)."""


class UnsupportedInputError(InputError):
    """The input is of a kind breastai cannot read (format, transfer syntax, SOP class)."""


class WeightsError(BreastAIError):
    """A model file or weights entry is missing, invalid or unusable."""


class WeightsNotFoundError(WeightsError):
    """No weights entry or file by that name."""


class ChecksumMismatchError(WeightsError):
    """A weights file's sha256 differs from the pinned value (the file was removed)."""


class DeviceUnavailableError(BreastAIError):
    """The requested compute device (``--device cuda[:N]``) cannot be used."""


class ClusterError(BreastAIError):
    """A Ray cluster cannot be used: Ray is not installed, the address is unreachable, or its
    workers cannot start."""


class OutputError(BreastAIError):
    """Outputs could not be written (unwritable folder, disk full)."""


class OutputExistsError(OutputError):
    """An output already exists and ``force`` was not given."""


class PacsError(BreastAIError):
    """A DICOMweb server (PACS) answered with an error, or its answer cannot be used."""


class PacsAuthError(PacsError):
    """The DICOMweb server refused the credentials (HTTP 401/403)."""


class PacsUnavailableError(PacsError):
    """The DICOMweb server could not be reached or kept failing (connection, timeout, HTTP 5xx)."""
