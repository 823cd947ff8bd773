"""Engine wiring: the ingest steps as Apache Beam (and later Ray Data) jobs."""
