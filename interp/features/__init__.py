"""Sparse autoencoders and transcoders (see docs/ARCHITECTURE.md); import the names from :mod:`interp`."""
