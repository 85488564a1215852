"""Reports: the numbers that say whether a model learned what it was trained for, built from the analyses."""
