"""``napari-vip``: every capability of the docks, without a GUI, with JSON out."""
