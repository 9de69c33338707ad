"""Cline memory banks: find them, chunk and embed them into Chroma, keep them fresh, search.

Heavy libraries (torch, sentence-transformers, onnxruntime, chromadb, tiktoken, watchfiles)
are imported inside this part only, each in one module, and only when first used.
"""
