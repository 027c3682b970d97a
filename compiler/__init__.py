"""Model loading and export, graph passes, quantization, the build pipeline and bundles."""
