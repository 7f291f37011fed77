"""``napari-vip gui``: napari with the VIP docks on a sample image (or your own file)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("gui", help="open napari with the VIP docks on a bundled sample image")
    p.add_argument("image", nargs="?", default=None,
                   help="image to open instead of the sample: NIfTI, a DICOM file or folder and JSRT .IMG open with "
                        "napari-vip's reader (volumes slices first), other files with napari's")
    p.add_argument("--screenshot", metavar="PNG", default=None,
                   help="save a screenshot of the window and quit (for documentation and checks)")
    p.set_defaults(func=run)


def run(args) -> int:
    import napari

    from ..widgets.launch import open_viewer

    open_viewer(args.image, screenshot=args.screenshot)
    napari.run()
    return 0
