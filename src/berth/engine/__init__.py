"""The engine: what dockerd does, as a library the CLI opens directly (no daemon)."""
