"""berth: a container engine. See docs/ and ../shared/DESIGN.md for the architecture."""

__version__ = "0.1.0"
