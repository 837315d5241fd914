"""The domain exceptions of chatbot.

Every error a user can cause is one of these. Each message names what was
received and how to fix it; the CLI prints it as one line on stderr and exits
with a nonzero status, never a traceback.
"""


class ChatbotError(Exception):
    """Base class for user-facing errors."""

    exit_code = 1


class CorpusError(ChatbotError):
    """A corpus spec or corpus file cannot be read (names the file and line)."""


class CheckpointError(ChatbotError):
    """A model directory is missing, incomplete or corrupt."""


class ModelNotFoundError(CheckpointError):
    """No trained model is available; the message says which command trains one."""


class StorageError(ChatbotError):
    """The conversation database cannot be opened, read or written."""


class ConversationNotFoundError(StorageError):
    """A conversation id that is not in the database."""


class ConversationChangedError(StorageError):
    """Another chat added to the conversation while this one made its reply; the reply was not stored."""


class RetryLaterError(ChatbotError):
    """Nothing was done, and the same request is likely to succeed later.

    Attributes:
        retry_after: seconds after which trying again is likely to succeed (HTTP's Retry-After).
    """

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class ConversationBusyError(RetryLaterError):
    """The conversation is answering another message (in another chat, request or process) and did not
    become free within the wait; nothing was stored."""


class OverloadedError(RetryLaterError):
    """A server worker holds as many requests as it may (`--max-queue`); this one was not taken."""


class ConfigError(ChatbotError):
    """An invalid option value (names the option, the value and the allowed range)."""
