"""LangSwarm: conversation memory for LLM agents."""
