"""One exception tree for every upstream. The class says what the caller may do next."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _


class ProviderError(Exception):
    """Base of every upstream failure. `retry_safe` tells whether sending again is allowed."""

    retry_safe = False
    default_message = _("The upstream call failed.")

    def __init__(self, message: str | None = None, *, provider: str = "", operation: str = "") -> None:
        self.message = str(message or self.default_message)
        self.provider = provider
        self.operation = operation
        super().__init__(self.message)


class ProviderNotReached(ProviderError):
    """Nothing reached the upstream (DNS, connection refused, TLS): sending again is safe."""

    retry_safe = True
    default_message = _("The upstream could not be reached; nothing was sent.")


class ProviderRejected(ProviderError):
    """A definite business refusal, with the vendor's own code and message."""

    default_message = _("The upstream refused the request.")

    def __init__(self, message: str | None = None, *, code: str = "", **kwargs) -> None:
        self.code = str(code)
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code else self.message


class OutcomeUnknown(ProviderError):
    """The request was sent but the answer was lost or unreadable. Never resend: query or ask a person."""

    default_message = _("The request was sent but its outcome is unknown.")


class SignatureInvalid(ProviderError):
    """A signature we received (callback or answer) does not verify."""

    default_message = _("The signature does not verify.")


class ProviderMisconfigured(ProviderError):
    """A credential or setting is missing or unusable; names the environment variable."""

    default_message = _("The upstream is not configured.")


class InvalidRequest(ProviderError):
    """Our own input is not acceptable to the vendor; detected before anything is sent."""

    default_message = _("The request is not valid for this upstream.")

    def __init__(self, message: str | None = None, *, field: str = "", **kwargs) -> None:
        self.field = field
        super().__init__(message, **kwargs)
