"""`make bench-peers`: the trainer loader against peers' loaders (LeRobot's `LeRobotDataset`) reading the
same episodes, each peer in its own environment."""
