"""Pure codecs: the wire formats detectors speak, turned into numpy arrays and back.

Nothing here knows about sockets, messages or files, so each codec can be tested (and fuzzed)
on bytes alone, and the receiver can call any of them from a worker thread.
"""
