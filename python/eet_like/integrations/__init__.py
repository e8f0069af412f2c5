"""Adapters to other libraries. Each is imported lazily: a missing transformers or fairseq
never breaks `import eet_like`."""
