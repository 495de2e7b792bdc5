"""bonelesion.roi."""
