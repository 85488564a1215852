"""Training dynamics: the analyses over every saved step of a training run, and where they change fastest."""
