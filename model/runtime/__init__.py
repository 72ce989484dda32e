"""Running a model: the Backend protocol, llama.cpp in a worker process, remote servers,
prompts and FIM templates, the embedded default model. Nothing here imports checkpoints,
training or the language server."""
