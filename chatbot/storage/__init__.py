"""Where conversations live: the only code that touches SQL (SQLAlchemy 2, bound parameters only).

- `schema`: the table classes (models, conversations, turns, schema_migrations).
- `database`: the database's lifecycle: open (owner-only file, pragmas), back up, migrate (named migrations).
- `postgres`: what differs on PostgreSQL: the psycopg 3 driver, UTC sessions, the migration lock, pg_dump backups.
- `branches`: the turn tree: alternatives, the active path, switching branches.
- `conversations`: `ConversationStore`, every read and write, one transaction each.
"""

from chatbot.storage.conversations import ConversationStore, open_store
from chatbot.storage.database import SCHEMA_VERSION
from chatbot.storage.schema import (
    SPEAKERS,
    TITLE_LENGTH,
    Branch,
    Conversation,
    ConversationSummary,
    ModelRecord,
    Transcript,
    Turn,
    auto_title,
    decoding_of,
)

__all__ = [
    "Branch",
    "SCHEMA_VERSION",
    "SPEAKERS",
    "TITLE_LENGTH",
    "Conversation",
    "ConversationStore",
    "ConversationSummary",
    "ModelRecord",
    "Transcript",
    "Turn",
    "auto_title",
    "decoding_of",
    "open_store",
]
