"""Qt docks.  The only package of napari-vip that imports Qt; they read layers, send requests, write results."""
