"""Re-encrypt every card PIN under the newest key in CARD_PIN_KEYS, so older keys can be retired."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from config.history import command_context
from orders.models import CardSecret
from orders.pins import PinUnreadable, reencrypt_pin

BATCH = 1000


class Command(BaseCommand):
    help = _("Re-encrypt every card PIN under the newest key of CARD_PIN_KEYS.")

    def handle(self, *args, **options):
        done = 0
        last_id = 0
        with command_context("rotate_card_pins"):
            while True:
                with transaction.atomic():
                    cards = list(
                        CardSecret.objects.select_for_update().filter(pk__gt=last_id).order_by("pk")[:BATCH]
                    )
                    if not cards:
                        break
                    for card in cards:
                        try:
                            card.pin_ciphertext = reencrypt_pin(card.pin_ciphertext)
                        except PinUnreadable as err:
                            raise CommandError(
                                _("Card secret %(id)s cannot be decrypted with any configured key; nothing in this "
                                  "batch was changed. Add the old key back to CARD_PIN_KEYS.") % {"id": card.pk}
                            ) from err
                    CardSecret.objects.bulk_update(cards, ["pin_ciphertext"])
                    done += len(cards)
                    last_id = cards[-1].pk
        self.stdout.write(_("%(count)d card PINs re-encrypted under the newest key.") % {"count": done})
