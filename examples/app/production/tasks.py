"""Celery tasks of the example app."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task
def add(x: int, y: int) -> int:
    """A round trip through the broker and the result backend (used by the tests)."""
    return x + y


@shared_task
def heartbeat() -> str:
    """Scheduled by celery beat, proving beat and the worker run."""
    logger.info("heartbeat")
    return "ok"
