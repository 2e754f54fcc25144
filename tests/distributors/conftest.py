from __future__ import annotations

import pytest

from config.roles import FINANCE_CLERK, FINANCE_SUPERVISOR
from tests.factories import make_user


@pytest.fixture
def clerk():
    return make_user("clerk", FINANCE_CLERK)


@pytest.fixture
def supervisor():
    return make_user("supervisor", FINANCE_SUPERVISOR)
