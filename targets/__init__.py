"""Deployment targets: one subpackage per backend, registered in `registry`."""
