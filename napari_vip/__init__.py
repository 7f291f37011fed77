"""napari-vip: visual and text prompting of medical vision-language and segmentation models in napari."""

__version__ = "0.1.0"
