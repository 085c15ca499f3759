class DomainError(Exception):
    """A business rule refused the request; the message is shown to the person as-is."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message
