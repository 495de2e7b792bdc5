"""bonelesion.phantom."""
