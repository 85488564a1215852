"""Files on disk: atomic writes, the checkpoint JSON schema, checkpoints, the shipped registry, HF GPT-2 weights."""
