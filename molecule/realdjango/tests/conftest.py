"""The scenario's one host, for every test module."""

import os

import pytest
import testinfra


@pytest.fixture(scope="session")
def host():
    return testinfra.get_host("ansible://slipway-molecule-realdjango",
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
