"""The one exception type every built-in capability raises when its policy refuses a request."""


class CapabilityDenied(PermissionError):
    """A host function refused a request because the capability's policy does not allow it.

    Subclasses ``PermissionError`` so that generic "access denied" handling keeps working, while
    still letting callers tell a policy refusal apart from an operating-system permission error.
    The message always names what was refused and what *is* allowed, so that an LLM reading the
    error can correct its code instead of retrying blindly.
    """
