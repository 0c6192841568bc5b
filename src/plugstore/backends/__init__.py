"""Built-in backends, one module per engine.  Each is imported only when used."""
