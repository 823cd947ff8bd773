"""Samples -> webdataset tar shards, the published layout and its manifest (docs/design.md §5)."""
