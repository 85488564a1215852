"""Analyses: pure functions from (model, cache, tokens) to tidy pandas DataFrames."""
