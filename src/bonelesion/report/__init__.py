"""bonelesion.report."""
