"""Delivery receipts: Evolution's ``messages.update`` events, matched to our messages by
the ``key.id`` the send returned (``data.keyId`` in v2.3; ``data.key.id`` in older shapes).

A receipt is stored first (one row per message id and step, so a repeat is a no-op) and
the message's delivery fields are then *recomputed from every stored step*: the result
does not depend on the order receipts arrive in (a late ``DELIVERY_ACK`` never turns
``read`` back into ``delivered``), and a receipt that arrives before the worker recorded
the id is applied when it does (:func:`apply_stored_receipts`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import DeliveryReceipt, Message

logger = logging.getLogger("chat")

Delivery = Message.Delivery
# Evolution's names (src/utils/renderStatus.ts: 0 ERROR … 5 PLAYED) to ours; PENDING and
# DELETED say nothing about delivery.
STEPS = {
    "SERVER_ACK": Delivery.SERVER_ACK,
    "DELIVERY_ACK": Delivery.DELIVERY_ACK,
    "READ": Delivery.READ,
    "PLAYED": Delivery.PLAYED,
    "ERROR": Delivery.ERROR,
}
RANK = {Delivery.SERVER_ACK: 1, Delivery.DELIVERY_ACK: 2, Delivery.READ: 3, Delivery.PLAYED: 4}
TIME_FIELD = {
    Delivery.SERVER_ACK: "server_ack_at",
    Delivery.DELIVERY_ACK: "delivered_at",
    Delivery.READ: "read_at",
    Delivery.PLAYED: "played_at",
    Delivery.ERROR: "delivery_error_at",
}


@dataclass(frozen=True)
class Receipt:
    evolution_id: str
    step: str  # a Message.Delivery value
    remote_jid: str
    at: datetime


def parse_receipt(payload: dict[str, Any]) -> Receipt | None:
    """The receipt in a ``messages.update`` event, or None when it is not about delivery
    of one of our sends (a received message's update, PENDING, DELETED, a poll vote)."""
    data = payload.get("data")
    if isinstance(data, list):  # some versions batch updates
        data = data[0] if data and isinstance(data[0], dict) else None
    if not isinstance(data, dict):
        return None
    key = data.get("key") if isinstance(data.get("key"), dict) else {}
    evolution_id = data.get("keyId") or key.get("id")
    from_me = data.get("fromMe", key.get("fromMe"))
    status = data.get("status")
    if isinstance(data.get("update"), dict):  # v1: {"key", "update": {"status": N}}
        status = data["update"].get("status", status)
    if isinstance(status, int):
        status = (
            ("ERROR", "PENDING", "SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED")[status]
            if 0 <= status <= 5
            else None
        )
    step = STEPS.get(str(status or "").upper())
    if not isinstance(evolution_id, str) or not evolution_id or step is None or from_me is False:
        return None
    remote_jid = data.get("remoteJid") or key.get("remoteJid") or ""
    at = parse_datetime(str(payload.get("date_time") or "")) or timezone.now()
    if timezone.is_naive(at):
        at = timezone.make_aware(at, timezone.get_current_timezone())
    return Receipt(evolution_id[:128], step, str(remote_jid)[:128], at)


def store_receipt(receipt: Receipt) -> bool:
    """Keep the receipt (False when this step of this message was already kept), then
    bring the message up to date."""
    try:
        with transaction.atomic():
            DeliveryReceipt.objects.create(
                evolution_id=receipt.evolution_id,
                status=receipt.step,
                remote_jid=receipt.remote_jid,
                received_at=receipt.at,
            )
        stored = True
    except IntegrityError:
        stored = False
    apply_stored_receipts(receipt.evolution_id)
    return stored


def apply_stored_receipts(evolution_id: str) -> int:
    """Recompute the delivery fields of the outbound message sent as ``evolution_id`` from
    every receipt kept for it; returns how many messages changed (0 or 1)."""
    receipts = list(DeliveryReceipt.objects.filter(evolution_id=evolution_id))
    if not receipts:
        return 0
    first: dict[str, datetime] = {}
    for receipt in receipts:
        if receipt.status not in first or receipt.received_at < first[receipt.status]:
            first[receipt.status] = receipt.received_at
    reached = [step for step in first if step in RANK]
    best = max(reached, key=RANK.__getitem__) if reached else ""
    if Delivery.ERROR in first and RANK.get(best, 0) < RANK[Delivery.DELIVERY_ACK]:
        best = Delivery.ERROR  # WhatsApp gave up before the phone had it
    fields: dict[str, Any] = {"delivery_status": best, "updated_at": timezone.now()}
    for step, at in first.items():
        fields[TIME_FIELD[step]] = at
    outbound = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, evolution_id=evolution_id
    )
    changed = outbound.update(**fields)
    if changed:
        logger.info("[CHAT] receipt for %s: %s", evolution_id, best or "-")
    return changed
