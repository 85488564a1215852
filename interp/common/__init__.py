"""Shared by every analysis: argument checks, metrics, the frame vocabulary and CSV export."""
