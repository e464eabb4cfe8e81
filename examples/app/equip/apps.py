from django.apps import AppConfig


class EquipConfig(AppConfig):
    name = "equip"
