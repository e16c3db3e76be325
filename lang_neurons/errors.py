"""The one exception family of lang_neurons: a user mistake, said in one line with its fix."""


class LangNeuronsError(ValueError):
    """Bad input or a mismatched artifact. The message says what was wrong and what to do."""
