"""Model-free building blocks: markers, prompts, image conversion, coordinates.

Only numpy and scikit-image are imported here; no torch, no Qt.
"""
