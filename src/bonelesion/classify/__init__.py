"""bonelesion.classify."""
