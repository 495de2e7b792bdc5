"""bonelesion.stages."""
