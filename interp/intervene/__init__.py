"""Changing activations: ablation specs, replacement values, the batched engine, sweeps and patching."""
