class SRError(Exception):
    """A problem the user can fix (bad input, wrong checkpoint, mismatched bundle).

    The CLI prints it as one line and exits non-zero, without a traceback.
    """
