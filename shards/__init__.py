"""Samples -> webdataset tar shards, the published layout and its manifest (DESIGN.md §5)."""
