"""sr_lib: compare MRI super-resolution and inpainting methods under one protocol.

The flow of data (see DESIGN.md): volumes -> normalise -> split by subject -> degrade ->
slices / patches -> method.fit -> method.predict -> metrics per test subject -> tables and
figures. Every arrow is a plain function of this package.
"""

__version__ = "0.1.0"
