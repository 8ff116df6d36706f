"""Simulators, one per wire format: what a detector would send, for tests, the demo and bench."""
