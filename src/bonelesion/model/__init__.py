"""Data model: `Volume` (image + LPS geometry), series roles, lesions and result records."""

from bonelesion.model.roles import SeriesRole
from bonelesion.model.volume import DEFAULT_GEOMETRY_ATOL_MM, LPS_FROM_RAS, SeriesInfo, Volume

__all__ = ["Volume", "SeriesInfo", "SeriesRole", "LPS_FROM_RAS", "DEFAULT_GEOMETRY_ATOL_MM"]
