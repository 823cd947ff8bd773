"""The bundled trainer: a small VLA, its two training stages and inference (see README.md)."""
