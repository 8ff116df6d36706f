"""Recorder library for the MacroServer (RecorderPath): see tango_receiver.sardana."""
