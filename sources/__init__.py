"""Raw sources -> records: the sources file, one reader per raw format, and synthetic sample generators."""
