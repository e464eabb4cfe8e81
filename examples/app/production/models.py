from django.db import models


class ProductionLine(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class WorkOrder(models.Model):
    line = models.ForeignKey(ProductionLine, on_delete=models.PROTECT, related_name="orders")
    number = models.CharField(max_length=32, unique=True)
    quantity = models.PositiveIntegerField()
    done = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.number
