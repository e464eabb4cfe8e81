from django.db import models


class Equipment(models.Model):
    """A machine on a production line: equip depends on production (the seeds' case)."""

    line = models.ForeignKey("production.ProductionLine", on_delete=models.CASCADE,
                             related_name="equipment")
    serial = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    in_service = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.serial
