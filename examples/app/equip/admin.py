from django.contrib import admin

from .models import Equipment

admin.site.register(Equipment)
