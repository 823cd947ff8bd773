"""Seeded generators of realistic sample data (kinematic robots, a small renderer, format writers)."""
