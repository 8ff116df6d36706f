"""The Tango face of a receiver: the device class (``device``), its server process
(``server``: ``python -m tango_receiver.tango.server detectors.yaml NAME``) and an embedded
database server for machines without one (``database``)."""
