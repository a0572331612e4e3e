"""What the Azure Functions host calls: the trigger handlers function_app.py binds, and the
bindings they are bound with. May import every layer below it (core to flow)."""
