"""Controller library for the Pool (PoolPath): see tango_receiver.sardana."""
