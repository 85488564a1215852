"""Training a MiniGPT: presets, the loop, resuming, data, evaluation and loss curves."""
