"""The compiled extension ``_v1lane``, loaded and bound once for its two users: the fast lane
for stream v1 and the internal format (``lane.py``, receive side) and the compiled chunk
writer (``engine/chunk_writer.py``).

The extension calls libzmq and HDF5 through the very libraries pyzmq and h5py loaded, so it is
bound to them at import. ``AVAILABLE`` is False where it was not built (``setup.py`` builds it
optionally) or cannot bind: the Python path then does all the work.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import h5py.h5d

log = logging.getLogger(__name__)


def _load() -> ModuleType | None:
    try:
        extension = importlib.import_module(f"{__package__}._v1lane")
        # pyzmq's Cython backend is the module that links libzmq (not so with its CFFI one)
        zmq_backend = importlib.import_module("zmq.backend.cython._zmq")
    except ImportError as exc:  # not built (no C compiler), or pyzmq without its Cython backend
        log.info("compiled lane off (%s): every frame takes the Python path", exc)
        return None
    extension.bind(zmq_backend.__file__, h5py.h5d.__file__)
    return extension


v1lane = _load()

AVAILABLE = v1lane is not None
