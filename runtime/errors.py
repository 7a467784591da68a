class SRError(Exception):
    """A problem the user can fix (bad input, wrong checkpoint, mismatched bundle).

    The CLI prints it as one line and exits non-zero, without a traceback.
    """


def os_error_line(err: OSError) -> str:
    """A file system error as the one line a user reads: the file, then what went wrong."""
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that it ends as an interrupt does: scratch files removed, the
    summary written (``raise_on_sigterm``)."""


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread (elsewhere signals cannot be handled)."""
    import signal
    import threading

    def terminated(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminated)
