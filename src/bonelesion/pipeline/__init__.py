"""bonelesion.pipeline."""
