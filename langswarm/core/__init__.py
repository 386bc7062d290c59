"""LangSwarm core packages."""
