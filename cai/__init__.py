"""cai: per-workspace Docker containers for AI agents, reached over SSH."""

__version__ = "0.1.0"
