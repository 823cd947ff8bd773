"""Export a layout to the formats other trainers load: LeRobot v3.0, openpi norm stats, GR00T modality."""
