"""One exception tree for every upstream. The class says what the caller may do next."""

from __future__ import annotations

import enum

from django.utils.translation import gettext_lazy as _


class ProviderError(Exception):
    """Base of every upstream failure. `retry_safe` tells whether sending again is allowed."""

    retry_safe = False
    default_message = _("The upstream call failed.")
    # Set by the transport (ProviderClient.execute) when the error arose after the request left:
    # from then on only the upstream's own definite refusal proves nothing was carried out.
    sent = False

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
    # False where the vendor refuses this request but something may still have been carried out
    # under its reference (17bst's "duplicate reqStreamId": an earlier request may exist).
    proves_not_carried_out = True

    def __init__(self, message: str | None = None, *, code: str = "", proves_not_carried_out: bool | None = None,
                 **kwargs) -> None:
        self.code = str(code)
        if proves_not_carried_out is not None:
            self.proves_not_carried_out = proves_not_carried_out
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


class Consequence(enum.Enum):
    """What a failed call means for the business record it carried: the one rule, for every vendor."""

    SEND_AGAIN = "send again"  # nothing reached the upstream: the same request may go again later
    NOT_CARRIED_OUT = "not carried out"  # certainly not done upstream: money held for it may be released
    MAYBE_CARRIED_OUT = "maybe carried out"  # it may have been done: hold the money, query or ask a person


def consequence_of(err: ProviderError) -> Consequence:
    """Only "nothing was sent" and a definite business refusal may release money or allow a resend.

    Our own checks (InvalidRequest) and a missing setting (ProviderMisconfigured) stop a call before
    anything is sent, so nothing was carried out; the same classes raised while reading an answer
    (a card PIN that does not decrypt: the cards were delivered and paid for) mean the opposite.
    Anything not listed here, and any new class, may have been carried out.
    """
    if isinstance(err, ProviderNotReached):
        return Consequence.SEND_AGAIN
    if isinstance(err, ProviderRejected):
        return Consequence.NOT_CARRIED_OUT if err.proves_not_carried_out else Consequence.MAYBE_CARRIED_OUT
    if isinstance(err, (InvalidRequest, ProviderMisconfigured)) and not err.sent:
        return Consequence.NOT_CARRIED_OUT
    return Consequence.MAYBE_CARRIED_OUT
