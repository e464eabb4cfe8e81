"""A one-off backfill in the shape of seed 002's: try it with --dry-run, then run it in steps.

    manage.py backfill_po --days 7 --limit 10 --dry-run
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from production.models import WorkOrder


class Command(BaseCommand):
    help = ("Mark as done the open work orders of production lines created in the last DAYS "
            "days, at most LIMIT of them, oldest first.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7, help="how far back (default 7)")
        parser.add_argument("--limit", type=int, default=10,
                            help="at most this many work orders (default 10)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would change and change nothing")

    def handle(self, *args, days, limit, dry_run, **options):
        if days < 1 or limit < 1:
            raise CommandError("--days and --limit must be 1 or more")
        since = timezone.now() - timedelta(days=days)
        with transaction.atomic():
            ids = list(WorkOrder.objects.select_for_update()
                       .filter(done=False, line__created_at__gte=since)
                       .order_by("id").values_list("id", flat=True)[:limit])
            self.stdout.write(f"work orders to backfill: {len(ids)} (days={days}, limit={limit})")
            if dry_run:
                self.stdout.write("dry run: nothing was saved")
                return
            updated = WorkOrder.objects.filter(id__in=ids).update(done=True)
        self.stdout.write(f"backfilled: {updated}")
