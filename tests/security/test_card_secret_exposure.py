"""Card PINs never reach a page that does not record their disclosure, and card numbers are masked.

A clerk and an auditor read every page that shows card secrets, of any distributor: the card
list and search, each card's page and history, the orders carrying them (inline), the audit log
and its entries, the disclosure log. None of them holds a PIN. A supervisor without
orders.reveal_cardsecret (or orders.export_cardsecret) cannot reveal (or export) either, and
nothing is recorded. Whatever the role, those pages show a card number only masked (its last
four characters); only the recorded reveal page and the recorded export hold it whole, beside
the PIN. The last tests prove the checks themselves: a supervisor who may reveal does see the
PIN and the card number on the page that records it.
"""

from __future__ import annotations

import html
from decimal import Decimal
from urllib.parse import quote_plus

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from pghistory.models import Events

from config.roles import AUDITOR, FINANCE_CLERK, FINANCE_SUPERVISOR, SUPERVISOR_PERMISSIONS
from orders.models import CardSecret, OrderKind, OrderStatus, PinDisclosure, Product, RechargeOrder
from orders.pins import masked_card_number
from orders.services import _store_cards, card_secret_reveal, card_secrets_export, order_create
from providers.models import Provider
from providers.results import CardSecretData
from tests.factories import fund, make_distributor, make_user, sign_in, verify_second_factor
from tests.security.conftest import snapshot

pytestmark = pytest.mark.django_db

PINS = {"EXPA": ["731904628815", "502287341196"], "EXPB": ["648210937752", "915503826641"]}
ALL_PINS = [pin for pins in PINS.values() for pin in pins]
# Gift-card numbers as 17bst hands them back: long digit strings, one per card.
CARD_NUMBERS = {"EXPA": ["8860012345670001", "8860012345670002"], "EXPB": ["8860098765430003", "8860098765430004"]}
ALL_CARD_NUMBERS = [number for numbers in CARD_NUMBERS.values() for number in numbers]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def cards():
    """Two distributors, each with a delivered gift-card order of two cards with known PINs."""
    creator = make_user("card_creator", FINANCE_CLERK)
    product = Product.objects.create(
        provider=Provider.BST17, code="EXP-12", name="话费卡 100", kind=OrderKind.GIFT_CARD,
        face_value=Decimal("100.00"), cost_price=Decimal("97.00"), sale_price=Decimal("98.00"),
    )
    orders = []
    for code, pins in PINS.items():
        distributor = make_distributor(code=code, name=f"卡密分销商 {code}")
        fund(distributor, "1000.00")
        order = order_create(distributor=distributor, product=product, actor=creator, quantity=len(pins))
        RechargeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.SUCCEEDED)
        _store_cards(order, [CardSecretData(card_number=number, pin=pin)
                             for number, pin in zip(CARD_NUMBERS[code], pins, strict=True)])
        orders.append(order)
    # One earlier, legitimate reveal, so the disclosure log has a row to show.
    supervisor = make_user("card_supervisor", FINANCE_SUPERVISOR)
    card_secret_reveal(card_secret=CardSecret.objects.order_by("pk").first(), actor=supervisor)
    return {"orders": orders, "cards": list(CardSecret.objects.order_by("pk"))}


def assert_no_pin(response, where: str) -> None:
    assert response.status_code == 200, (where, response.status_code)
    body = response.content.decode()
    leaked = [pin for pin in ALL_PINS if pin in body]
    assert not leaked, f"{where} shows PINs {leaked}"


def reading_pages(cards) -> list[tuple[str, str]]:
    pages = [
        ("card list", reverse("admin:orders_cardsecret_changelist")),
        ("card list, every distributor", reverse("admin:orders_cardsecret_changelist") + "?all="),
        ("card search by number", reverse("admin:orders_cardsecret_changelist") + f"?q={ALL_CARD_NUMBERS[-1]}"),
        ("card search by order", reverse("admin:orders_cardsecret_changelist")
         + f"?q={cards['orders'][0].client_reference}"),
        ("order list", reverse("admin:orders_rechargeorder_changelist")),
        ("disclosure log", reverse("admin:orders_pindisclosure_changelist")),
        ("audit log of cards", reverse("admin:pghistory_events_changelist") + "?model=orders.CardSecret"),
        ("audit log, card events",
         reverse("admin:pghistory_events_changelist") + "?event_model=orders.CardSecretEvent"),
        ("audit log, everything", reverse("admin:pghistory_events_changelist") + "?label=insert"),
    ]
    for card in cards["cards"]:
        pages += [
            (f"card {card.pk}", reverse("admin:orders_cardsecret_change", args=[card.pk])),
            (f"history of card {card.pk}", reverse("admin:orders_cardsecret_history", args=[card.pk])),
            (f"audit log of card {card.pk}",
             reverse("admin:pghistory_events_changelist") + f"?obj=orders.CardSecret:{card.pk}"),
            (f"audit log of card {card.pk}, tracks",
             reverse("admin:pghistory_events_changelist") + f"?method=tracks&obj=orders.CardSecret:{card.pk}"),
        ]
    for order in cards["orders"]:
        pages += [
            (f"order {order}", reverse("admin:orders_rechargeorder_change", args=[order.pk])),
            (f"history of order {order}", reverse("admin:orders_rechargeorder_history", args=[order.pk])),
        ]
    for disclosure in PinDisclosure.objects.all():
        url = reverse("admin:orders_pindisclosure_change", args=[disclosure.pk])
        pages.append((f"disclosure {disclosure.pk}", url))
    events = Events.objects.filter(pgh_obj_model__in=["orders.CardSecret", "orders.RechargeOrder"])
    assert events.filter(pgh_obj_model="orders.CardSecret").count() == len(ALL_PINS)
    for event in events:
        pages.append((f"audit entry {event.pk}", reverse("admin:pghistory_events_change", args=[quote(event.pk)])))
    return pages


@pytest.mark.parametrize("role", [FINANCE_CLERK, AUDITOR])
def test_no_page_a_clerk_or_auditor_can_open_shows_a_pin(client, cards, role):
    sign_in(client, make_user("reader", role))
    before = snapshot()
    disclosures = PinDisclosure.objects.count()

    for where, url in reading_pages(cards):
        assert_no_pin(client.get(url), where)

    # The cards of both distributors were listed (masked), so the absence of PINs means something.
    listing = client.get(reverse("admin:orders_cardsecret_changelist")).content.decode()
    assert all(masked_card_number(card.card_number) in listing for card in cards["cards"])
    for card in cards["cards"]:  # the audit log does show the card rows (their data, masked number and all)
        audit = client.get(reverse("admin:pghistory_events_changelist") + f"?obj=orders.CardSecret:{card.pk}")
        assert masked_card_number(card.card_number) in audit.content.decode()
    assert PinDisclosure.objects.count() == disclosures
    assert snapshot() == before


def without_search_echo(body: str, url: str) -> str:
    """The page minus the echo of what was typed in the search box: the box itself, and the links that
    keep the search (sorting, the audit log's way back, each row's return to the list)."""
    if "?q=" not in url:
        return body
    typed = url.split("?q=", 1)[1]
    for echo in (f'value="{html.escape(typed)}"', f"q={quote_plus(typed)}", f"q%3D{quote_plus(typed)}"):
        body = body.replace(echo, "")
    return body


def assert_no_card_number(response, where: str, url: str) -> None:
    assert response.status_code == 200, (where, response.status_code)
    body = without_search_echo(response.content.decode(), url)
    clear = [number for number in ALL_CARD_NUMBERS if number in body]
    assert not clear, f"{where} shows card numbers in clear: {clear}"


@pytest.mark.parametrize("role", [FINANCE_CLERK, AUDITOR, FINANCE_SUPERVISOR, "superuser"])
def test_no_list_inline_or_change_page_shows_a_card_number_in_clear(client, cards, role):
    if role == "superuser":
        sign_in(client, make_user("card_root", is_superuser=True))
    else:
        sign_in(client, make_user("card_reader", role))
    url = reverse("admin:orders_cardsecret_changelist")
    selected = [card.pk for card in cards["cards"]]
    # Besides the reading pages: the confirmation pages of reveal and export list the cards chosen.
    confirmations = [
        (f"{action} confirmation", client.post(url, {"action": action, "_selected_action": selected,
                                                     "select_across": "0"}))
        for action in ("reveal", "export_xlsx")
    ]

    for where, page_url in reading_pages(cards):
        assert_no_card_number(client.get(page_url), where, page_url)
    for where, response in confirmations:
        assert response.status_code in (200, 302), where
        assert not [number for number in ALL_CARD_NUMBERS if number in response.content.decode()], where

    # Masked, not missing: each row shows the card's last four characters, and a search by the full
    # number still finds its card.
    listing = client.get(url)
    assert listing.context["cl"].result_count == len(ALL_CARD_NUMBERS)
    for number in ALL_CARD_NUMBERS:
        assert masked_card_number(number) in listing.content.decode()
        assert masked_card_number(number).endswith(number[-4:]) and number[:-4] not in masked_card_number(number)
    found = client.get(url, {"q": ALL_CARD_NUMBERS[-1]})
    assert [card.card_number for card in found.context["cl"].result_list] == [ALL_CARD_NUMBERS[-1]]
    card = cards["cards"][0]
    event = Events.objects.filter(pgh_obj_model="orders.CardSecret", pgh_obj_id=str(card.pk)).get()
    entry = client.get(reverse("admin:pghistory_events_change", args=[quote(event.pk)])).content.decode()
    assert masked_card_number(card.card_number) in entry and str(card.order_id) in entry  # the row's data, masked


def supervisor_without(client, codename: str):
    """A signed-in, second-factor-verified supervisor holding every supervisor permission but one."""
    user = make_user(f"supervisor_without_{codename}")
    permissions = [
        Permission.objects.get(content_type__app_label=app, codename=name)
        for app, name in sorted(SUPERVISOR_PERMISSIONS) if name != codename
    ]
    user.user_permissions.set(permissions)
    assert user.has_perm("orders.view_cardsecret") and not user.has_perm(f"orders.{codename}")
    sign_in(client, user)
    verify_second_factor(client, user)
    return user


@pytest.mark.parametrize(("codename", "action"),
                         [("reveal_cardsecret", "reveal"), ("export_cardsecret", "export_xlsx")])
def test_a_supervisor_without_the_permission_cannot_reveal_or_export(client, cards, codename, action):
    user = supervisor_without(client, codename)
    url = reverse("admin:orders_cardsecret_changelist")
    selected = [card.pk for card in cards["cards"]]
    disclosures = PinDisclosure.objects.count()
    before = snapshot()

    listing = client.get(url)
    offered = [name for name, _label in listing.context["action_form"].fields["action"].choices]
    first_click = client.post(url, {"action": action, "_selected_action": selected, "select_across": "0"})
    confirmed = client.post(url, {"action": action, "_selected_action": selected, "select_across": "0",
                                  "confirmed": "yes"})
    across = client.post(url, {"action": action, "_selected_action": selected, "select_across": "1",
                               "confirmed": "yes"})

    assert action not in offered
    for response in (first_click, confirmed, across):
        assert response.status_code in (200, 302)
        assert not response.get("Content-Type", "").startswith(XLSX)
        assert "admin/orders/cardsecret/revealed.html" not in {t.name for t in response.templates}
        body = response.content.decode()
        assert not [pin for pin in ALL_PINS if pin in body]
    with pytest.raises(PermissionDenied):
        if action == "reveal":
            card_secret_reveal(card_secret=cards["cards"][0], actor=user)
        else:
            card_secrets_export(card_secrets=cards["cards"], actor=user)
    assert PinDisclosure.objects.count() == disclosures
    assert snapshot() == before


def test_the_check_would_see_a_pin_a_supervisor_reveals(client, cards):
    """The control: with the permission, the PIN is on the page, and the reveal is recorded."""
    supervisor = make_user("revealer", FINANCE_SUPERVISOR)
    sign_in(client, supervisor)
    verify_second_factor(client, supervisor)
    card = cards["cards"][-1]

    response = client.post(reverse("admin:orders_cardsecret_changelist"), {
        "action": "reveal", "_selected_action": [card.pk], "select_across": "0", "confirmed": "yes",
    })

    assert response.status_code == 200 and ALL_PINS[-1] in response.content.decode()
    assert ALL_CARD_NUMBERS[-1] in response.content.decode()  # the card number whole, beside its PIN
    assert PinDisclosure.objects.filter(user=supervisor, card_secret=card, channel="reveal").count() == 1


def test_the_recorded_export_holds_the_card_numbers_whole(client, cards):
    from io import BytesIO

    from openpyxl import load_workbook

    supervisor = make_user("exporter", FINANCE_SUPERVISOR)
    sign_in(client, supervisor)

    response = client.post(reverse("admin:orders_cardsecret_changelist"), {
        "action": "export_xlsx", "_selected_action": [card.pk for card in cards["cards"]], "select_across": "0",
        "confirmed": "yes",
    })

    assert response["Content-Type"].startswith(XLSX)
    rows = list(load_workbook(BytesIO(response.content)).active.iter_rows(min_row=2, values_only=True))
    assert sorted((row[2], row[3]) for row in rows) == sorted(zip(ALL_CARD_NUMBERS, ALL_PINS, strict=True))
    assert PinDisclosure.objects.filter(user=supervisor, channel="export").count() == len(ALL_PINS)
