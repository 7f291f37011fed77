"""Model specs, safe weight loading and the model computations.

torch, open_clip and segment_anything are imported inside functions so that importing the plugin
stays fast; :mod:`napari_vip.models.spec` and :mod:`napari_vip.models.checkpoint` import no torch at
module level.
"""
