"""Numerical precision of a model: ``auto``, ``fp32``, ``bf16`` or ``fp16``, resolved per device and model family.

How a precision is applied
--------------------------
The heavy part of a model (CLIP's image tower, SAM's and SAM 2's image encoders, SAM 2's memory attention and
memory encoder, a VLSM's vision blocks) is *cast*: its
weights and its input are converted to the chosen dtype, and its output comes back as float32.  On CPUs this
is what is fast: ``torch.autocast("cpu", torch.bfloat16)`` re-casts the weights at every call and was measured
about 4x *slower* than float32 on a CPU where casting the module was 2.5x faster (``benchmarks/bench_precision.py``
measures both).  What stays in float32, whatever the choice: CLIP's text tower (in bfloat16 it alone failed
the class-probability gate), softmax over classes, L2 normalisation of
embeddings, SAM's and SAM 2's prompt encoders and mask decoders (so the mask threshold is applied to float32
logits), attention-map arithmetic, metrics, and every trainable
parameter (mixed precision with float32 master weights).

``auto``
--------
- CPU: ``bf16`` when the CPU has AMX-BF16 or AVX-512-BF16 (read from ``/proc/cpuinfo`` flags ``amx_bf16``,
  ``avx512_bf16``; where there is no ``/proc/cpuinfo``, oneDNN's own bfloat16 check), else ``fp32``: without
  these instructions bfloat16 is emulated, and on an AVX2 CPU (AMD EPYC, 2 threads) a bfloat16 matrix product
  ran 70x *slower* than float32.
- CUDA: ``bf16`` on GPUs that run it natively (compute capability 8.0 and newer), else ``fp16``.
- Apple MPS and anything else: ``fp32`` (not measured in this project).
- A model family that failed a parity gate in a precision (:data:`AUTO_EXCLUDED`) gets ``fp32`` from ``auto``
  instead; choosing that precision explicitly still works.

torch is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import VipInputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The precisions a model runs in (``auto`` resolves to one of them).
CONCRETE = ("fp32", "bf16", "fp16")
#: torch dtype names of the concrete precisions.
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Model families (what :func:`resolve_precision` is asked for).
FAMILIES = ("clip", "sam", "sam2", "vlsm")
#: CPU flags (as ``/proc/cpuinfo`` spells them) that run bfloat16 natively.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: ``(family, precision)`` pairs that ``auto`` never picks, with the parity gate they failed.  Empty: every family
#: passed every gate in bf16 and fp16 (``tests/test_precision_parity.py``).
AUTO_EXCLUDED: dict[tuple[str, str], str] = {}


def check_precision(choice: str) -> str:
    """``choice`` if it is one of :data:`PRECISIONS`, else a :class:`VipInputError` listing them."""
    if choice not in PRECISIONS:
        raise VipInputError(f"Unknown precision {choice!r}; choose one of {', '.join(PRECISIONS)} "
                            "(auto: bfloat16 on CPUs with AMX/AVX-512-BF16, half precision on GPUs, else float32).")
    return choice


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU feature flags of the first processor in ``cpuinfo``; ``None`` where the file does not exist
    (macOS, Windows) or has no ``flags`` line."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_runs_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether this CPU runs bfloat16 natively (AMX-BF16 or AVX-512-BF16).

    Parameters
    ----------
    flags : set of str, optional
        CPU flags as ``/proc/cpuinfo`` spells them (tests pass a faked set); default: this machine's, or where
        there is no ``/proc/cpuinfo``, PyTorch's own checks of the instruction sets.
    """
    if flags is None:
        flags = cpu_flags()
    if flags is not None:
        return any(f in flags for f in BF16_CPU_FLAGS)
    try:  # oneDNN's own check: bfloat16 kernels for this CPU (AVX-512 and newer)
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - torch without oneDNN
        return False


def cuda_runs_bf16(device: str = "cuda") -> bool:
    """Whether the CUDA GPU ``device`` runs bfloat16 natively (compute capability 8.0 or newer)."""
    import torch

    try:
        major, _ = torch.cuda.get_device_capability(device)
    except (RuntimeError, AssertionError, ValueError):
        return False
    return major >= 8


def auto_precision(device: str, family: str, *, cpu_flags_set=None, cuda_bf16: bool | None = None) -> str:
    """What ``auto`` means for ``family`` on ``device`` (a resolved torch device string): ``fp32|bf16|fp16``.

    ``cpu_flags_set`` and ``cuda_bf16`` fake the hardware (tests); by default they are detected.
    """
    kind = str(device).split(":")[0]
    if kind == "cpu":
        wanted = "bf16" if cpu_runs_bf16(cpu_flags_set) else "fp32"
    elif kind == "cuda":
        native = cuda_runs_bf16(device) if cuda_bf16 is None else cuda_bf16
        wanted = "bf16" if native else "fp16"
    else:
        wanted = "fp32"
    if (family, wanted) in AUTO_EXCLUDED:
        return "fp32"
    return wanted


def resolve_precision(choice: str, device: str, family: str, **fake) -> str:
    """The concrete precision (``fp32|bf16|fp16``) that ``choice`` means for ``family`` on ``device``.

    Parameters
    ----------
    choice : str
        One of :data:`PRECISIONS`.
    device : str
        A resolved torch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
    family : str
        One of :data:`FAMILIES`.
    **fake
        ``cpu_flags_set=`` / ``cuda_bf16=`` to fake the hardware (see :func:`auto_precision`).

    Raises
    ------
    VipInputError
        An unknown choice or family, or bfloat16 asked of a CUDA GPU that does not run it.
    """
    check_precision(choice)
    if family not in FAMILIES:
        raise VipInputError(f"Unknown model family {family!r} for a precision; one of {', '.join(FAMILIES)}.")
    if choice == "auto":
        return auto_precision(device, family, **fake)
    if choice == "bf16" and str(device).startswith("cuda"):
        native = fake.get("cuda_bf16")
        if not (cuda_runs_bf16(device) if native is None else native):
            raise VipInputError(f"Precision bf16 was asked for, but the GPU {device} does not run bfloat16 "
                                "(it needs compute capability 8.0 or newer); choose fp16, auto or fp32.")
    return choice


def concrete_precision(spec, device: str, family: str):
    """``spec`` (a dataclass with a ``precision`` field) with ``auto`` replaced by what it resolves to on ``device``,
    so that one loaded model serves ``auto`` and the precision it means, and results record the concrete one."""
    import dataclasses

    precision = resolve_precision(spec.precision, device, family)
    return spec if precision == spec.precision else dataclasses.replace(spec, precision=precision)


def torch_dtype(precision: str):
    """The torch dtype of a concrete precision (``fp32`` -> ``torch.float32`` ...)."""
    import torch

    if precision not in DTYPE_NAMES:
        raise VipInputError(f"Precision {precision!r} is not concrete; resolve 'auto' first.")
    return getattr(torch, DTYPE_NAMES[precision])


def resolve_dtype(choice: str, device: str, family: str, **fake):
    """:func:`resolve_precision` as a torch dtype."""
    return torch_dtype(resolve_precision(choice, device, family, **fake))


def precision_provenance(precision: str, choice: str | None = None) -> dict:
    """The provenance entry of a model's precision: the concrete one, its dtype and what was asked for."""
    out = {"precision": precision, "dtype": DTYPE_NAMES[precision]}
    if choice is not None:
        out["precision_choice"] = choice
    return out


# -- applying a precision ----------------------------------------------------------------------------------------
def _cast_floats(obj, dtype):
    """``obj`` with every floating tensor in it (nested lists, tuples, dicts) cast to ``dtype``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, (list, tuple)):
        out = [_cast_floats(v, dtype) for v in obj]
        return type(obj)(out) if not hasattr(obj, "_fields") else type(obj)(*out)
    if isinstance(obj, dict):
        return type(obj)((k, _cast_floats(v, dtype)) for k, v in obj.items())
    return obj


def cast_module(module, precision: str, float32_output: bool = True):
    """Run ``module`` in ``precision``: its weights and floating buffers cast, its floating inputs cast on the way
    in and (``float32_output``) its floating outputs cast back to float32 on the way out, by forward hooks.

    ``fp32`` leaves the module as it is.  Returns ``module`` (cast in place).  The hooks' handles are kept on the
    module as ``_vip_precision_hooks`` and a second call replaces them.
    """
    import torch

    for h in getattr(module, "_vip_precision_hooks", ()):
        h.remove()
    module._vip_precision_hooks = ()
    dtype = torch_dtype(precision)
    module.to(dtype)
    if precision == "fp32":
        return module

    def cast_in(mod, args, kwargs):
        return _cast_floats(args, dtype), _cast_floats(kwargs, dtype)

    hooks = [module.register_forward_pre_hook(cast_in, with_kwargs=True)]
    if float32_output:
        hooks.append(module.register_forward_hook(lambda mod, args, out: _cast_floats(out, torch.float32)))
    module._vip_precision_hooks = tuple(hooks)
    return module


#: Where the blocks of a VLSM's frozen vision tower are, as attribute paths on ``VlsmModel.module`` (CLIPSeg and
#: CoTexNet: transformers' CLIP vision encoder; BiomedCLIPSeg: the timm ViT trunk).
VLSM_VISION_BLOCKS = ("clipseg.clip.vision_model.encoder.layers", "biomedclip.visual.trunk.blocks")


def apply_vlsm_precision(model, precision: str):
    """Run a VLSM's frozen vision-tower blocks in ``precision``; returns ``model`` with ``model.precision`` set.

    Each block is cast with float32 output (:func:`cast_module`), so the hidden states the decoder reads (and that
    the activation store keeps) are float32; the text tower, the decoder, the sigmoid and the threshold stay
    float32.  A precision other than float32 is added to ``model.weights_id`` (``...:bf16``), so stored
    activations of two precisions never share a key.  Meant for inference: a fine-tuning run that saves the whole
    module should load its model in ``fp32`` (the cast weights would be saved rounded).
    """
    blocks = None
    for path in VLSM_VISION_BLOCKS:
        obj = model.module
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            blocks = list(obj)
            break
    if blocks is None:
        raise VipInputError(f"{type(model.module).__name__}: no vision tower found to run in {precision}; use fp32.")
    for block in blocks:
        cast_module(block, precision)
    if precision != "fp32" and not str(model.weights_id).endswith(f":{precision}"):
        model.weights_id = f"{model.weights_id}:{precision}"
    model.precision = precision
    return model
