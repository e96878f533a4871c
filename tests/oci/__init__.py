"""OCI test infrastructure: an engine-free image-layout builder, real registries, skopeo, a hostile registry."""
