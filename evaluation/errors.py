class EvaluationError(Exception):
    """A request the evaluation app refuses; the message is shown to the user as it stands."""
