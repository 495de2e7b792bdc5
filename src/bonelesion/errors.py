"""The one exception tree of bonelesion, and its data-quality warning.

Every message names what failed, where (file, series UID, tag), what was expected
against what was found, and a potential fix (STYLE.md §5).
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "InputError",
    "NotDicomError",
    "DamagedFileError",
    "MissingAttributeError",
    "UnsupportedInputError",
    "SeriesSelectionError",
    "SeriesGeometryError",
    "GeometryMismatchError",
    "FrameOfReferenceError",
    "EmptyMaskError",
    "ConfigError",
    "StageError",
    "DataQualityWarning",
]


class PipelineError(Exception):
    """Root of every error raised by bonelesion."""


class InputError(PipelineError, ValueError):
    """The input data cannot be used as given."""


class NotDicomError(InputError):
    """A file is not a DICOM data set (or is truncated beyond repair)."""


class DamagedFileError(InputError):
    """One file is damaged (truncated, undecodable pixel data, an invalid value).

    ``path`` names the file, so that a reader can leave it out and keep the rest of its
    series (a damaged or duplicate file is never the reason a stack is lost).
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[type[DamagedFileError], tuple[str, str]]:
        return (type(self), (str(self), self.path))


class MissingAttributeError(InputError):
    """A DICOM attribute the operation needs is absent or empty."""


class UnsupportedInputError(InputError):
    """Valid input of a kind bonelesion does not handle (SOP class, transfer syntax …)."""


class SeriesSelectionError(InputError):
    """Zero, or more than one, candidate series or stack where exactly one was needed."""


class SeriesGeometryError(InputError):
    """A series whose geometry cannot be made into one regular volume."""


class GeometryMismatchError(InputError):
    """Two volumes (e.g. a mask and an image) whose geometries do not match."""


class FrameOfReferenceError(GeometryMismatchError):
    """A mask or volume from another frame of reference (registration would be needed)."""


class EmptyMaskError(InputError):
    """A lesion mask that holds no voxel (after resampling onto the target grid)."""


class ConfigError(PipelineError, ValueError):
    """A configuration file or value is invalid; the message names the dotted key."""


class StageError(PipelineError):
    """An unexpected failure inside a stage; names the stage and the series UID."""


class DataQualityWarning(UserWarning):
    """Data that can be used, but with a caveat the user should know about."""
