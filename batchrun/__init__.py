"""batchrun: turn a manifest of prompts and images into RunComfy video generations, resumably."""

__version__ = "0.1.0"
