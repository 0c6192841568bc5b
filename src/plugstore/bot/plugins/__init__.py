"""The chat host's built-in plugins (each one also a small example of the plugin API)."""
