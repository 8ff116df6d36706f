"""tango_receiver: detector ZMQ streams into HDF5, as a Tango device server with a REST sidecar.

bitshuffle is built with OpenMP. Its parallel regions spin-wait, and on a machine whose cores
are already busy (decoder workers, the writer, the detector's own sender) each compression then
waits for whole scheduler slices: measured here, 1 frame/s instead of 170 for a Zyla frame. The
receiver parallelises across frames with its workers instead, so OpenMP gets one thread, unless
the environment says otherwise. This must happen before bitshuffle is first imported.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
