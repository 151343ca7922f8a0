"""The RAGFlow-compatible application: HTTP API, storage, queue, task executors, parsers."""
