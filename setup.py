"""The one compiled part: the stream v1 fast lane (tango_receiver/_v1lane.c, see lane.py).

Optional: where it cannot be built (no C compiler) the package installs without it and every
frame takes the Python path.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tango_receiver._v1lane", ["tango_receiver/_v1lane.c"],
                             libraries=["dl"], extra_compile_args=["-O2", "-Wall"],
                             optional=True)])
