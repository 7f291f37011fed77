"""Safe loading of weight files: safetensors or ``torch.load(weights_only=True)``, never code."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from ..core.errors import VipInputError

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path) -> str:
    """Hex sha256 of a file, remembered per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def load_state_dict(path, what: str = "model") -> dict:
    """Read a state dict from ``path`` without running any code stored in it.

    Accepts a plain state dict or one wrapped under ``state_dict``/``model``; strips a ``module.``
    prefix (DataParallel/DDP).  Raises :class:`VipInputError` naming ``what`` and the file for a missing,
    truncated, foreign or code-carrying file.

    Returns
    -------
    dict
        ``{name: torch.Tensor}`` on the CPU.
    """
    import pickle

    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise VipInputError(f"{what}: checkpoint file {str(p)!r} does not exist; check the path.")
    if os.path.getsize(p) == 0:
        raise VipInputError(f"{what}: checkpoint file {str(p)!r} is empty.")
    if p.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise VipInputError(f"{what}: {str(p)!r} is not a readable safetensors file ({exc}).") from None
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise VipInputError(
                f"{what}: refused to load {str(p)!r}: it is a pickle that carries code or objects other than "
                f"tensors ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]}). Save a plain state dict "
                "(torch.save(model.state_dict(), path)) or a .safetensors file."
            ) from None
        except Exception as exc:  # noqa: BLE001 -- torch raises many types for a foreign or truncated file
            raise VipInputError(
                f"{what}: could not read {str(p)!r} ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]}); the file is truncated or "
                "not a PyTorch checkpoint. Download it again or pick another file."
            ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VipInputError(f"{what}: {str(p)!r} does not hold a state dict of tensors.")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_into(module, state: dict, what: str, path) -> None:
    """``module.load_state_dict(state, strict=True)`` with a message naming the mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"model {tuple(own[k].shape)})")
        raise VipInputError(
            f"Checkpoint {str(path)!r} does not fit {what}: {'; '.join(parts)} weights. "
            "Is it a checkpoint of another architecture? Choose the matching architecture."
        )
    module.load_state_dict(state, strict=True)


class WeightsProvenance:
    """For a loaded model dataclass with ``spec`` (its ``untrained`` flag and ``to_dict()``), ``sha256``,
    ``device`` and ``precision`` (the concrete one it runs in, ``fp32|bf16|fp16``): the untrained flag and the
    model part of every result's provenance."""

    @property
    def untrained(self) -> bool:
        return self.spec.untrained

    def provenance(self) -> dict:
        """Model part of a result's provenance (``precision`` and ``dtype``: what the model ran in)."""
        from .precision import precision_provenance

        return {"model": self.spec.to_dict(), "weights_sha256": self.sha256, "untrained": self.untrained,
                "device": self.device, **precision_provenance(getattr(self, "precision", "fp32"))}


def load_network(spec, device: str, progress, build: Callable, guess: Callable, expected: str | None,
                 released, family: str, not_this_family: str, named: str = "{}"):
    """``(network, sha256, weights_id)`` for ``spec`` (``arch``, ``checkpoint``, ``untrained``, ``describe()``).

    Untrained: ``build()`` with torch seeded 0 (the same random weights every time), ``sha256`` ``None`` and a
    per-load random ``weights_id`` (an embedding of other random weights is never reused).  Else the file is read
    safely, ``guess(state)`` names its architecture (``None``: not this family; a name outside ``released``: a
    custom size), a file of another architecture than ``expected`` (``None``: not checked) is refused naming the
    one to choose, and its weights are loaded into ``build()``.  The network is in eval mode on ``device``.

    Parameters
    ----------
    family : str
        How messages name the family, e.g. ``"SAM 2"`` ("a SAM 2 checkpoint of a custom size").
    named : str
        How messages name a released architecture, e.g. ``"SAM {}"`` ("a SAM vit_l checkpoint").
    not_this_family : str
        The message for a file ``guess`` does not recognise; ``{path}`` is replaced by the file's name.
    """
    import torch

    say = progress or (lambda text: None)
    if spec.untrained:
        say(f"building {spec.describe()}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build()
        return net.to(device).eval(), None, f"untrained-{uuid.uuid4().hex}"
    say(f"reading weights {spec.checkpoint}")
    state = load_state_dict(spec.checkpoint, what=spec.describe())
    found = guess(state)
    if found is None:
        raise VipInputError(not_this_family.format(path=repr(spec.checkpoint)))
    if expected is not None and found != expected:
        known = found in released
        what = f"a {named.format(found)} checkpoint" if known else f"a {family} checkpoint of a custom size"
        raise VipInputError(f"{spec.checkpoint!r} is {what}, but architecture {spec.arch} was chosen. "
                            + (f"Choose --sam-arch {found}." if known else "Choose the matching architecture."))
    digest = sha256_file(spec.checkpoint)
    say(f"building {spec.describe()}")
    net = build()
    load_into(net, state, f"{family} architecture {spec.arch}", spec.checkpoint)
    return net.to(device).eval(), digest, digest
