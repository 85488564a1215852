"""The MiniGPT network: config, tokenizer, token ids, hooks, activation cache, layers, logits, factored matrices."""
