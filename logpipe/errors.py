"""The one small error hierarchy of logpipe.

Every error a user can cause is a ``LogpipeError``. Its HTTP status comes from its category,
set here and nowhere else (moby's ``errdefs``): ``InvalidParameter`` 400, ``Unauthorized`` 401,
``Forbidden`` 403, ``NotFound`` 404, ``Conflict`` 409, ``NotModified`` 304, ``ReadNotSupported`` 501,
anything else 500. Errors
defined elsewhere (``runtime/errors.py``, ``runtime/images.py``) subclass a category and set
no status; the API's error middleware is the one place that turns an error into a response.
Messages use Docker's wording where Docker has one.
"""


class LogpipeError(Exception):
    """Base of every error logpipe reports to a user."""

    status = 500


class InvalidParameter(LogpipeError):
    """Something the user typed is malformed (HTTP 400)."""

    status = 400


class Unauthorized(LogpipeError):
    """Credentials were refused, e.g. by a registry at ``docker login`` (HTTP 401)."""

    status = 401


class NotFound(LogpipeError):
    """The object the request names does not exist (HTTP 404)."""

    status = 404


class Conflict(LogpipeError):
    """The request conflicts with the object's state or another object (HTTP 409)."""

    status = 409


class Forbidden(LogpipeError):
    """The request is refused as such, whatever the state (HTTP 403: libnetwork's)."""

    status = 403


class NotModified(LogpipeError):
    """Already started / already stopped: Docker answers 304 with no body."""

    status = 304

    def __init__(self) -> None:
        super().__init__("")


class LogOptError(InvalidParameter):
    """A ``--log-opt`` key or value is not accepted by the chosen driver."""


class DriverInitError(LogOptError):
    """A value Docker's driver *constructor* refuses, when the container starts (its API then
    answers ``failed to initialize logging driver: <this>``). logpipe refuses the same value
    at create, and the daemon adds Docker's prefix, so a user reads what Docker would print."""


class UnknownDriver(InvalidParameter):
    """No built-in or registered driver has this name."""


class TemplateError(LogOptError):
    """A Go template does not parse or cannot run, in Go's words: a ``tag`` (a log option,
    hence the base class) or a CLI ``--format``, which the CLI reports itself."""


class MissingLibrary(InvalidParameter):
    """The chosen driver's client library is not installed in logpipe's Python environment.

    A 400, not a 500: nothing is wrong with the server's code, the request asks for a driver
    this installation cannot run; installing the package named in the message (or choosing
    another driver) makes the same request succeed.
    """


class ReadNotSupported(LogpipeError):
    """The container's driver keeps no local copy to read (HTTP 501)."""

    status = 501

    def __init__(self, message: str = "configured logging driver does not support reading") -> None:
        super().__init__(message)


class LogWriterBusy(Conflict):
    """Another process already writes this log directory."""


class CorruptLog(LogpipeError):
    """A stored log file is damaged beyond the point where it can be read."""


class SendError(LogpipeError):
    """A remote driver could not deliver a batch (raised by ``RemoteDriver.send``)."""


class RetryableError(SendError):
    """The receiver may take the batch later: it is down, slow, throttling, or answered 5xx.
    The shipper sends the same batch again after a backoff; nothing is lost."""


class PermanentError(SendError):
    """The receiver will never take this batch (a 400-class answer other than throttling).
    The shipper counts its records as rejected, reports it, and goes on with the next one."""


class PartlyStored(OSError):
    """A storage driver's ``write`` failed (disk full, I/O error) after storing the first
    ``records`` records of its batch (lines, or pieces of a long line, in batch order); the
    rest was not stored. A driver that raises a plain ``OSError`` stored none of it."""

    def __init__(self, err: OSError, records: int) -> None:
        super().__init__(err.errno, err.strerror or str(err))
        self.records = records
