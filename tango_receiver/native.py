"""The compiled extension ``_v1lane``, loaded and bound once for its two users: the fast lane
for stream v1 and the internal format (``lane.py``, receive side) and the compiled chunk
writer (``engine/chunk_writer.py``).

The extension calls libzmq and HDF5 through the very libraries pyzmq and h5py loaded, so it is
bound to them at import. ``AVAILABLE`` is False where it was not built (``setup.py`` builds it
optionally) or cannot bind: the Python path then does all the work.
"""

from __future__ import annotations

import logging
from types import ModuleType

import h5py.h5d

log = logging.getLogger(__name__)

v1lane: ModuleType | None
try:
    from . import _v1lane as v1lane
    # pyzmq's Cython backend is the module that links libzmq (not so with its CFFI one)
    import zmq.backend.cython._zmq as zmq_extension
except ImportError as exc:  # not built (no C compiler), or pyzmq without its Cython backend
    log.info("compiled lane off (%s): every frame takes the Python path", exc)
    v1lane = None
else:
    v1lane.bind(zmq_extension.__file__, h5py.h5d.__file__)

AVAILABLE = v1lane is not None
