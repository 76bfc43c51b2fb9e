class EvaluationError(Exception):
    """A request the evaluation app refuses; the message is shown to the user as it stands."""


class NotInQueue(EvaluationError):
    """The assignment is not the rater's own in a study they are enrolled in (or does not exist): a 404 to a view."""
