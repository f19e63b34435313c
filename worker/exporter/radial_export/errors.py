"""The one exception type that the exporter's user sees as a message instead of a traceback."""


class ExportError(ValueError):
    """Input the exporter cannot turn into a bundle: an unsupported config value, missing or
    mis-shaped tensors, a missing tokenizer file. The message names the file, key or tensor and says
    what was expected; the command line prints it and exits with status 2."""
