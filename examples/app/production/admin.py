from django.contrib import admin

from .models import ProductionLine, WorkOrder

admin.site.register(ProductionLine)
admin.site.register(WorkOrder)
