"""sc2edge bench."""
