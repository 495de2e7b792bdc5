"""Data model: `Volume` (image + LPS geometry), lesions and result records."""

from bonelesion.model.volume import DEFAULT_GEOMETRY_ATOL_MM, LPS_FROM_RAS, SeriesInfo, Volume

__all__ = ["Volume", "SeriesInfo", "LPS_FROM_RAS", "DEFAULT_GEOMETRY_ATOL_MM"]
