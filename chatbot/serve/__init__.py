"""`chatbot serve`: the dialogue manager over HTTP, an OpenAI-compatible API and a conversation API.

- `settings`: `ServeConfig`, every setting of a server and its default.
- `keys`: API keys (`--api-key-file`), compared in constant time; a key's name owns its conversations.
- `openai_protocol`: the pydantic models of OpenAI's Chat Completions wire format and its error object.
- `conversation_protocol`: the pydantic models of the conversation API.
- `batching`: the worker's one inference thread, which decodes concurrent requests as one batch.
- `worker`: what one worker process holds: the model (loaded in the background), the manager, the threads.
- `completions`: ``/v1/chat/completions`` and ``/v1/models``: messages matched to stored conversations.
- `conversations_api`: ``/v1/conversations``: the REPL's features as resources.
- `app`: the FastAPI application: limits, auth, errors, ``/health``.
- `server`: starts uvicorn (workers, host and key checks, SIGTERM).
"""
