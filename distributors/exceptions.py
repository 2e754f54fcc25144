from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


class InsufficientFunds(ValidationError):
    """A posting would take an account below the floor it is allowed to reach."""

    def __init__(self, *, account, amount: Decimal, available: Decimal) -> None:
        self.account = account
        self.amount = amount
        self.available = available
        super().__init__(
            _(
                "Refused: %(account)s would go below its allowed floor. "
                "Requested %(amount)s, available %(available)s (balance plus credit limit)."
            )
            % {"account": account, "amount": f"{-amount:.2f}", "available": f"{available:.2f}"},
            code="insufficient_funds",
        )
