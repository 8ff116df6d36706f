"""The REST sidecar: the HTTP surface beamline clients already poll, plus live view and metrics.

It reads the receiver's single stats snapshot and live-view slot and keeps no state of its own,
so it can never disagree with the Tango device that reads the same receiver.
"""

from .app import create_app
from .server import Sidecar, start_sidecar

__all__ = ["Sidecar", "create_app", "start_sidecar"]
