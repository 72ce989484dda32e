"""Team checkpoints: the manifest, signatures, verification before loading, packing and
installing from a directory or a mirror."""
