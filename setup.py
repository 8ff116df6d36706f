"""The compiled parts, both optional: where they cannot be built (no C compiler) the package
installs without them, and the same work runs in Python, slower.

- the stream v1 fast lane (tango_receiver/_v1lane.c, see lane.py);
- the bitshuffle-LZ4 block-table walk (tango_receiver/codecs/_blockwalk.c, see bslz4.py).
"""

from setuptools import Extension, setup

TABLE = ["tango_receiver/codecs/bslz4_table.h"]
FLAGS = ["-O2", "-Wall"]

setup(ext_modules=[
    Extension("tango_receiver._v1lane", ["tango_receiver/_v1lane.c"], depends=TABLE,
              libraries=["dl"], extra_compile_args=FLAGS, optional=True),
    Extension("tango_receiver.codecs._blockwalk", ["tango_receiver/codecs/_blockwalk.c"],
              depends=TABLE, extra_compile_args=FLAGS, optional=True),
])
