"""The five fields of a crontab line (minute hour day-of-month month day-of-week), in UTC.

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of
these; day-of-week 0 and 7 are Sunday. As in cron, when both day fields are restricted a day
matches either of them. No names (``mon``, ``jan``) and no ``@daily`` shortcuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# (name, lowest, highest)
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))
# The longest a valid expression can wait for its next match (29 February of a leap year
# falling on a given weekday); an expression that never matches (31 February) stops there.
SEARCH_YEARS = 30


class CronError(ValueError):
    """The expression is not five valid fields; the message names the field."""


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isdecimal() or not low <= int(text) <= high:
        raise CronError(f"{name}: {text!r} is not a number from {low} to {high}")
    return int(text)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _slash, step_text = part.partition("/")
        step = _number(step_text, name, 1, high) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _dash, last = base.partition("-")
            start, end = _number(first, name, low, high), _number(last, name, low, high)
            if start > end:
                raise CronError(f"{name}: the range {base!r} goes backwards")
        else:
            start = _number(base, name, low, high)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday, as datetime.weekday()
    any_day: bool
    any_weekday: bool

    def _day_matches(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        in_week = moment.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime:
        """The first whole minute strictly after ``moment`` that the expression matches."""
        current = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = current + timedelta(days=366 * SEARCH_YEARS)
        while current < limit:
            if current.month not in self.months:
                month = current.month % 12 + 1
                current = current.replace(year=current.year + (month == 1), month=month, day=1,
                                          hour=0, minute=0)
            elif not self._day_matches(current):
                current = (current + timedelta(days=1)).replace(hour=0, minute=0)
            elif current.hour not in self.hours:
                current = (current + timedelta(hours=1)).replace(minute=0)
            elif current.minute not in self.minutes:
                current += timedelta(minutes=1)
            else:
                return current
        raise CronError(f"{self.expression!r} matches no date")


def parse(expression: str) -> Cron:
    if not isinstance(expression, str):
        raise CronError(f"a cron expression is a string of five fields, not {expression!r}")
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise CronError(f"{expression!r} has {len(parts)} fields, not 5 (minute hour "
                        "day-of-month month day-of-week)")
    values = [_field(part, name, low, high)
              for part, (name, low, high) in zip(parts, FIELDS, strict=True)]
    # cron's Sunday is 0 (or 7), Monday 1; datetime's Monday is 0, Sunday 6.
    weekdays = frozenset((day - 1) % 7 for day in values[4])
    cron = Cron(expression=" ".join(parts), minutes=values[0], hours=values[1], days=values[2],
                months=values[3], weekdays=weekdays, any_day=parts[2].startswith("*"),
                any_weekday=parts[4].startswith("*"))
    cron.next_after(datetime(2000, 1, 1))  # one that can never match fails here, not later
    return cron
