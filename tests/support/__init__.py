"""Helpers shared by the unit, integration and e2e tests (on the path via pytest's ``pythonpath``)."""
