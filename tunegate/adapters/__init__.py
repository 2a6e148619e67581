"""Fine-tuned adapters: export from PEFT to llama.cpp GGUF, and the files a download serves."""
