"""Reading weights: QK and OV circuits, copying scores and composition scores (no prompt needed)."""
