"""The HTTP API (FastAPI): auth, devices, conversations, history, HTTP send, media."""
