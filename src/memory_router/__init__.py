"""Cline Memory Router: one OpenAI model name, the right local model behind it."""

__version__ = "0.1.0"
