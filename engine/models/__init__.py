"""fastText models: loading (checked, cached once per worker process) and training; lid.176.ftz ships here."""
