"""SQL text of the metric store, kept in named ``.sql`` files and read with importlib.resources."""
