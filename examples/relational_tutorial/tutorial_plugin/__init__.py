"""The Peek tutorial plugin's storage, rebuilt the plugstore way (see docs/relational.md)."""
