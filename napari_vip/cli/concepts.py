"""Concept prompts on the command line.

- ``napari-vip concepts IMAGE (--box X0 Y0 X1 Y1 | --mask MASK.png) --keyword nodule --json``:
  describe a region in words (region concepts, no model);
- ``napari-vip concepts IMAGE --mask MASK.png --class polyp --ladder [--definition TEXT ...] --json``:
  the medvlsm prompt ladder p0 ... p9 (:mod:`napari_vip.core.prompt_ladder`);
- ``napari-vip symptoms CLASS ... [--library FILE] [--generate --llm-url URL --llm-model NAME] --json``:
  the symptom library's descriptors of classes, or new ones from a language model;
- ``napari-vip classify ... --concepts LIBRARY.json``: zero-shot where each class is the mean of its
  concept embeddings (:func:`run_classify_with_concepts`, called by the classify subcommand).
"""

from __future__ import annotations

from .common import (
    add_window_args,
    emit,
    engine_for,
    image_block,
    marker_suffixes,
    markers_from_args,
    model_image,
    model_spec_from_args,
    read_image,
    recipe_of,
    save_rendered,
    stderr_progress,
    untrained_warning,
)


def add_parser(sub) -> None:
    from ..core.region_concepts import VARIANTS

    p = sub.add_parser("concepts", help="describe a region (mask or box) in words: number, shape, size, colour, "
                                        "location")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                     help="the region's box in (x, y) pixels (described by the ellipse inscribed in it)")
    src.add_argument("--mask", metavar="MASK", help="mask image of the same height and width (non-zero = region)")
    p.add_argument("--label", type=int, default=None, help="use only this label value of a label-image mask")
    p.add_argument("--keyword", default="lesion", help="what the region is, e.g. nodule, polyp (default lesion)")
    p.add_argument("--template", default=None,
                   help="template with {number} {shape} {size} {color} {keyword} {location}")
    p.add_argument("--variant", default=None, choices=list(VARIANTS),
                   help="print this progressive variant instead of the full sentence")
    p.add_argument("--number-words", action="store_true", help="write the number as a word (one, two)")
    p.add_argument("--class", dest="class_name", default=None,
                   help="the class the region shows (with --ladder; the same as --keyword otherwise)")
    p.add_argument("--ladder", action="store_true",
                   help="print medvlsm's prompt ladder p0 ... p9 for the mask (an empty mask gives 'no CLASS')")
    p.add_argument("--definition", action="append", default=None, metavar="TEXT",
                   help="a definition of the class for p7-p9 (repeat for several; default: the released "
                        "definitions of polyp, skin melanoma and foot ulcer, else the symptom library)")
    p.add_argument("--definitions", default=None, metavar="FILE",
                   help="symptom-library JSON to take the class's definitions from")
    add_window_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)

    s = sub.add_parser("symptoms", help="visual descriptors of classes from the symptom library or a language "
                                        "model")
    s.add_argument("classes", nargs="*", help="class names (none: list the library's classes)")
    s.add_argument("--library", default=None,
                   help="library JSON file (default: the bundled library merged with the user's)")
    s.add_argument("--modality", default="chest x-ray")
    s.add_argument("--generate", action="store_true",
                   help="ask the language model (OpenAI-compatible chat completions) and cache the answer in the "
                        "user's library")
    s.add_argument("--llm-url", default=None, help="endpoint URL (default $NAPARI_VIP_LLM_URL)")
    s.add_argument("--llm-model", default=None, help="model name (default $NAPARI_VIP_LLM_MODEL)")
    s.add_argument("--llm-key-env", default=None,
                   help="environment variable holding the API key (default NAPARI_VIP_LLM_API_KEY)")
    s.add_argument("--llm-timeout", type=float, default=None, help="seconds (default 30)")
    s.add_argument("-n", type=int, default=5, help="descriptors to ask for")
    s.add_argument("--no-cache", action="store_true", help="do not write generated descriptors to the user's library")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=run_symptoms)


def read_mask(path, label: int | None = None):
    """``(H, W)`` mask array from a file; with ``label``, a bool mask of that label value."""
    import numpy as np

    from ..core.errors import VipInputError

    arr = np.asarray(read_image(path))
    if label is not None:
        if arr.ndim != 2:
            raise VipInputError(f"--label needs a label image (H, W); {path} has shape {arr.shape}.")
        if not np.any(arr == label):
            present = [int(v) for v in np.unique(arr) if v != 0][:20]
            raise VipInputError(f"Label {label} is not in {path}; labels present: {present or 'none'}.")
        arr = arr == label
    return arr


def run_ladder(args, image) -> int:
    """``--ladder``: the ten prompts for the mask (or the ellipse in the box) on the image the model sees."""
    import numpy as np

    from ..core.prompt_ladder import ladder_attributes, ladder_from_attributes
    from ..core.region_concepts import box_region

    hw = image.rgb.shape[:2]
    mask = read_mask(args.mask, args.label) if args.mask else box_region(args.box, hw)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[:2] == hw:
        mask = mask[..., :3].any(axis=-1)
    class_name = args.class_name or args.keyword
    attrs = ladder_attributes(image.rgb, mask != 0, class_name, args.definition, args.definitions)
    ladder = ladder_from_attributes(attrs)
    d = {"ladder": ladder, "attributes": attrs.to_dict(), "class": class_name,
         "definitions_from": ("--definition" if args.definition else args.definitions or "released / library"),
         "image": image_block(args, image), "mask": str(args.mask) if args.mask else None,
         "notes": list(image.notes) + attrs.notes}
    lines = [f"{k}: {v}" if isinstance(v, str) else f"{k}: " + " | ".join(v) for k, v in ladder.items()]
    emit(d, args.json, "\n".join(lines))
    return 0


def run(args) -> int:
    from ..worker.concepts import RegionConceptsRequest
    from ..worker.engine import ProgressReporter

    image = model_image(args)
    if args.ladder:
        return run_ladder(args, image)
    if args.class_name:
        args.keyword = args.class_name
    mask = read_mask(args.mask, args.label) if args.mask else None
    req = RegionConceptsRequest(image.rgb, mask, tuple(args.box) if args.box else None, args.keyword,
                                args.template, args.number_words)
    result = engine_for(args).run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    d["notes"] = list(image.notes) + list(result.concepts.notes)
    d["image"] = image_block(args, image)
    d["mask"] = str(args.mask) if args.mask else None
    c = result.concepts
    text = result.variants[args.variant] if args.variant else result.sentence
    lines = [text, "",
             f"number {c.number}  shape {c.shape} (eccentricity {c.eccentricity:.2f}, solidity {c.solidity:.2f})  "
             f"size {c.size} ({c.area_fraction:.2%} of the image)  colour {c.color}  location {c.location}  "
             f"(from the {c.source})"]
    lines += [f"  {k}: {v}" for k, v in result.variants.items()]
    lines += [f"note: {n}" for n in d["notes"]]
    emit(d, args.json, "\n".join(lines))
    return 0


def _llm_config(args):
    from ..models.llm_descriptors import LlmConfig

    return LlmConfig.from_env(url=args.llm_url, model=args.llm_model, key_env=args.llm_key_env,
                              timeout_s=args.llm_timeout)


def run_symptoms(args) -> int:
    from ..core.errors import VipInputError
    from ..core.symptoms import descriptors_for, load_library, user_library_path

    if args.generate:
        from ..worker.concepts import DescriptorsRequest
        from ..worker.engine import Engine, ProgressReporter

        if not args.classes:
            raise VipInputError("--generate needs the class names to describe.")
        config = _llm_config(args)
        if config.problem():
            raise VipInputError(config.problem())
        engine = Engine()
        out = {}
        for c in args.classes:
            res = engine.run(DescriptorsRequest(c, args.modality, config, args.n, not args.no_cache),
                             ProgressReporter(stderr_progress))
            out[c] = res.descriptors
        prov = res.provenance.to_dict()
        d = {"classes": out, "source": "language model", "provenance": prov,
             "cached_in": None if args.no_cache else str(user_library_path())}
    else:
        lib = load_library(args.library)
        names = args.classes or list(lib)
        out = {c: descriptors_for(lib, c, args.modality) for c in names}
        missing = [c for c, v in out.items() if not v]
        d = {"classes": out, "source": args.library or "bundled + user library", "missing": missing}
    lines = []
    for c, ds in out.items():
        lines.append(f"{c}:" + ("" if ds else "  (not in the library)"))
        lines += [f"  - {x}" for x in ds]
    emit(d, args.json, "\n".join(lines))
    return 0


def library_concepts(classes, library: str, modality: str) -> dict[str, list[str]]:
    """Class -> descriptors from ``library`` (a file, or ``default`` for bundled + user); VipInputError naming
    the classes the library lacks."""
    from ..core.errors import VipInputError
    from ..core.prompts import check_classes
    from ..core.symptoms import descriptors_for, load_library

    if not classes:
        raise VipInputError("--concepts needs --classes: the findings whose concepts to look up in the library.")
    lib = load_library(None if library == "default" else library)
    classes = check_classes(classes)
    concepts = {c: descriptors_for(lib, c, modality) for c in classes}
    missing = [c for c, v in concepts.items() if not v]
    if missing:
        known = ", ".join(sorted(lib)[:30])
        where = "(bundled + user)" if library == "default" else library
        raise VipInputError(f"The symptom library {where} has no concepts for {', '.join(map(repr, missing))}; "
                            f"add them to the file or choose classes it has ({known}).")
    return concepts


def run_classify_with_concepts(args) -> int:
    """``napari-vip classify ... --concepts LIBRARY.json``: concept zero-shot with the classify options."""
    from ..worker.concepts import CONCEPT_TEMPLATE, ConceptClassifyRequest
    from ..worker.engine import ProgressReporter

    image = model_image(args)
    markers = markers_from_args(args)
    concepts = library_concepts(args.classes, args.concepts, args.modality)
    template = getattr(args, "concept_template", None) or CONCEPT_TEMPLATE
    req = ConceptClassifyRequest(image_rgb=image.rgb, markers=markers, concepts=concepts,
                                 model=model_spec_from_args(args), template=template, modality=args.modality,
                                 marker_text=marker_suffixes(args), include_baseline=not args.no_baseline,
                                 device=args.device, recipe=recipe_of(args), notes=list(image.notes))
    if getattr(args, "save_rendered", None):
        save_rendered(args.save_rendered, image.rgb, markers, recipe_of(args))
    result = engine_for(args).run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    d["image"] = image_block(args, image)
    d["library"] = str(args.concepts)
    lines = untrained_warning(result.provenance.untrained)
    lines += [f"note: {n}" for n in result.notes]
    width = max(len(c) for c in result.classes)
    for cond in result.conditions:
        lines.append(f"[{cond.name}]")
        for c, p in zip(result.classes, cond.probabilities):
            lines.append(f"  {c:<{width}}  {p:6.1%}  best concept: {cond.best_concept[c]}")
    emit(d, args.json, "\n".join(lines))
    return 0
