"""tunegate: a self-hosted, OpenAI-compatible fine-tuning API for local llama.cpp gateways."""

__version__ = "0.1.0"
