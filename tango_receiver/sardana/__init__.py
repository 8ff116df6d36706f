"""Sardana integration (``pip install tango_receiver[sardana]``): a receiver as a 2D channel whose
values are references to each scan point's frames, the NeXus recorder that resolves them, and
its ROIs as counter channels (each point's sum per ROI).

Sardana loads controllers and recorders from directories, not from packages: point the Pool's
``PoolPath`` at ``POOL_PATH`` and the MacroServer's ``RecorderPath`` at ``RECORDER_PATH``.
"""

from pathlib import Path

POOL_PATH = str(Path(__file__).parent / "pool")
RECORDER_PATH = str(Path(__file__).parent / "recorders")
CONTROLLER_CLASS = "TangoReceiverTwoDController"
ROI_CONTROLLER_CLASS = "TangoReceiverRoiController"
