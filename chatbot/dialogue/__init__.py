"""Dialogue management: the DialogueManager that owns every exchange, and the conversation service under it."""
