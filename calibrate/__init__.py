"""sc2edge calibrate."""
