"""What a spaCy pipeline raises when its tokvec server fails it: the component, the server, the
cause, and what to change."""

from __future__ import annotations

import grpc

from tokvec.errors import ServerError, TokvecError

# What the user can do about each status, in words that point at a setting.
_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is a tokvec server running at that address and reachable from this process? "
    "(check with `tokvec info --server ADDRESS`, or change address)",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the call took longer than timeout = {timeout}s: raise timeout, "
    "or lower the nlp.pipe batch_size",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the server is overloaded or the batch is over its limits: "
    "lower the nlp.pipe batch_size, or add server replicas to address",
    grpc.StatusCode.UNAUTHENTICATED: "set token_env to the name of an environment variable that holds a valid token",
    grpc.StatusCode.PERMISSION_DENIED: "set token_env to the name of an environment variable that holds a valid token",
    grpc.StatusCode.INVALID_ARGUMENT: "check the pooling, spans, dtype and model settings",
}


class PipelineError(TokvecError):
    """A tokvec component or listener could not get rows: names the component, server and cause."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN, target: str = "") -> None:
        super().__init__(message, code)
        self.target = target


class ModelMismatchError(PipelineError):
    """The server's model (fingerprint or width) is not the one the pipeline was built for."""


def server_failure(who: str, exc: ServerError, timeout: float | None) -> PipelineError:
    """Wrap a failed call: ``who`` is e.g. "tokvec_transformer 'tokvec'"."""
    hint = _HINTS.get(exc.code, "see the server's log for details").format(timeout=timeout)
    message = (
        f"{who}: tokvec server {exc.target} failed the call: {exc.code.name}: {exc.details or 'no details'}. {hint}"
    )
    return PipelineError(message, exc.code, exc.target)


class SplitError(TokvecError):
    """``tokvec split`` cannot map something in the pipeline: names the component and the setting."""

    def __init__(self, message: str) -> None:
        super().__init__(message, grpc.StatusCode.INVALID_ARGUMENT)
