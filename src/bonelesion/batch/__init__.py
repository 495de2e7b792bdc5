"""bonelesion.batch."""
