"""One exception type whose message is a single sentence fit for the UI and the CLI."""


class ModelLoadError(RuntimeError):
    """A model or adapter could not be loaded; the message says what is wrong and what to do."""


class AdapterError(ModelLoadError):
    """An adapter directory is missing, malformed, or made for another base model."""
