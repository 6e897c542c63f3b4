"""LoRAs with a weight per frame: read a LoRA file, fit it to the model, and add its delta through forward hooks.

A LoRA adds ``scale · (alpha / rank) · up(down(x))`` to the output of some of the model's Linear and Conv2d layers.
Here it is never merged into the weights: each adapted layer gets a forward hook that adds the delta with a scale
per sample, like a bend's per-sample parameter, so frames with different LoRA weights share one U-Net batch (with
classifier-free guidance the batch is doubled and both halves of a frame get the frame's weight). A sample whose
weight is 0 gets exactly the layer's own output, and a batch where every weight is 0 costs nothing.

Two key layouts are read, each mapped to the model's module names:

* kohya / A1111: ``lora_unet_<module path with _ for .>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``;
  ``lora_te_`` (or ``lora_te1_``) for the text encoder and ``lora_te2_`` for SDXL's second one. The module is found
  by comparing with the model's own module names written with ``_``, so no naming table can drift. SDXL LoRAs
  trained by kohya name U-Net blocks the original (LDM) way (``input_blocks_4_1_...``); those are renamed to the
  diffusers blocks first.
* diffusers / PEFT: ``unet.<module path>.lora_A.weight`` / ``lora_B.weight`` (``text_encoder.``,
  ``text_encoder_2.``), with alphas from the file's ``lora_adapter_metadata`` (``lora_alpha``, ``alpha_pattern``,
  ``use_rslora``) or ``.alpha`` keys, else alpha = rank; and the older diffusers names ``.lora.down.weight`` /
  ``.lora.up.weight``, ``.lora_linear_layer.down.weight`` and ``.processor.to_q_lora.down.weight``.

Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run code when loaded, so they are read only when
the job's model trusts pickles. Anything else (LyCORIS and DoRA weights, unknown keys, layers the model lacks or
whose shapes differ, values that are not finite) is a one-line ``LoraError`` naming the LoRA and what was found.

torch is imported inside the functions that need it: the job parser uses this module before torch is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .files import open_regular

if TYPE_CHECKING:
    import torch

    from .bends import ParamBatch

# Bounds a job may ask for; each is far beyond what any real LoRA stack uses.
MAX_LORAS = 64
MAX_LORA_WEIGHT = 10.0  # |weight|: LoRAs are made for about 0..1.5; beyond 10 the image is only noise
MAX_LORA_BYTES = 8 * 1024**3  # the largest SDXL LoRAs (rank 256 on every layer) are under 2 GB
MAX_LORA_RANK = 4096
SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")  # as models.py: files whose loading can run code
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_COMPONENT_WORDS = {"unet": "U-Net", "text_encoder": "text encoder", "text_encoder_2": "second text encoder"}

_KOHYA_PREFIXES = (("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"))
_KOHYA_PREFIXES += (("lora_te_", "text_encoder"),)
_KOHYA_SUFFIXES = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
_DIFFUSERS_SUFFIXES = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".down.weight", "down"),  # the attention-processor names: ...attn1.processor.to_q_lora.down.weight
    (".up.weight", "up"),
    (".alpha", "alpha"),
)
# Other adapter kinds, recognised so the error says what the file is instead of "unknown key"
_OTHER_KINDS = (
    ("dora_scale", "DoRA"),
    ("lora_magnitude_vector", "DoRA"),
    ("hada_", "LyCORIS LoHa"),
    ("lokr_", "LyCORIS LoKr"),
    ("lora_mid", "LoCon with a Tucker (lora_mid) layer"),
    ("oft_", "OFT"),
    ("lora_B.bias", "LoRA with biases"),
)
# The attention processors' LoRA names, as diffusers wrote them before PEFT
_PROCESSOR_NAMES = {
    "unet": {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"},
    "text_encoder": {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"},
}


class LoraError(EngineError):
    """A LoRA cannot be read or does not fit the model. The message names the LoRA and what was found."""


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA of the job: its unique name (frames give a weight per name) and its file."""

    name: str
    path: Path


@dataclass(frozen=True)
class LoraLayer:
    """One adapted layer: ``down`` and ``up`` shaped as the layer's kind needs, and alpha / rank."""

    path: str  # the module's name in its component
    down: torch.Tensor  # (rank, in) for a Linear, (rank, in, kh, kw) for a Conv2d
    up: torch.Tensor  # (out, rank) for a Linear, (out, rank, 1, 1) for a Conv2d
    scale: float


@dataclass(frozen=True)
class Lora:
    """A LoRA fitted to one model: its layers per component (``unet``, ``text_encoder``, ``text_encoder_2``)."""

    name: str
    layers: Mapping[str, tuple[LoraLayer, ...]]

    @property
    def has_text_encoder(self) -> bool:
        return any(self.layers.get(c) for c in TEXT_ENCODERS)


def _label(spec: LoraSpec) -> str:
    return f"LoRA {spec.name!r} ({spec.path.name})"


# --- the job's side: the file, checked before anything renders, and its identity for frame hashes --------------


def check_lora_file(spec: LoraSpec, where: str, trust_pickle: bool) -> None:
    """Refuse, with a message naming ``where``, a LoRA file that is missing, not a regular file, too large, of an
    unknown kind, or a pickle the job does not trust. Its keys are read when the model is loaded."""
    suffix = spec.path.suffix.lower()
    if suffix != SAFETENSORS_SUFFIX and suffix not in PICKLE_SUFFIXES:
        raise LoraError(f"{where}: {spec.path.name} is not a .safetensors LoRA file")
    if suffix in PICKLE_SUFFIXES and not trust_pickle:
        raise LoraError(
            f"{where}: {spec.path.name} is a pickle-based file, which can run code when loaded. Convert it to "
            ".safetensors, or set model.trust_pickle only if you trust where it came from"
        )
    _file_size(spec.path, where)


def _file_size(path: Path, where: str) -> int:
    try:
        fd = open_regular(path, os.O_RDONLY, where)
    except FileNotFoundError:
        raise LoraError(f"{where}: {path} does not exist") from None
    except EngineError as exc:  # a folder, FIFO, device or socket
        raise LoraError(f"{where}: {exc}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise LoraError(f"{where}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > MAX_LORA_BYTES:
        raise LoraError(f"{where}: {path} is {size:,} bytes; the limit for a LoRA file is {MAX_LORA_BYTES:,}")
    return size


_IDENTITIES: dict[tuple, str] = {}


def file_identity(path: Path, where: str) -> str:
    """The SHA-256 of the file's content, so frames re-render when the LoRA file changes (and only then: a copy on
    another machine hashes the same). Cached per file state, so a warm engine hashes a file once."""
    try:
        fd = open_regular(path, os.O_RDONLY, where)
    except EngineError as exc:
        raise LoraError(f"{where}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise LoraError(f"{where}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        info = os.fstat(fd)
        key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        cached = _IDENTITIES.get(key)
        if cached is not None:
            return cached
        if info.st_size > MAX_LORA_BYTES:
            raise LoraError(f"{where}: {path} is {info.st_size:,} bytes; the limit is {MAX_LORA_BYTES:,}")
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 24):
            digest.update(chunk)
    finally:
        os.close(fd)
    _IDENTITIES[key] = digest.hexdigest()
    return _IDENTITIES[key]


# --- reading a file ------------------------------------------------------------------------------------------------


def read_lora_file(spec: LoraSpec, trust_pickle: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's tensors by key, and its safetensors metadata (empty for a pickle)."""
    label = _label(spec)
    check_lora_file(spec, label, trust_pickle)
    if spec.path.suffix.lower() in PICKLE_SUFFIXES:
        return _read_pickle(spec.path, label), {}
    from safetensors import safe_open

    try:
        with safe_open(str(spec.path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # SafetensorError, or OSError for a file cut short
        raise LoraError(f"{label}: not a readable .safetensors file ({_one_line(exc)})") from exc
    return tensors, metadata


def _read_pickle(path: Path, label: str) -> dict[str, Any]:
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=False)  # trusted: the job said so
    except Exception as exc:
        raise LoraError(f"{label}: cannot be read as a PyTorch pickle ({_one_line(exc)})") from exc
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise LoraError(f"{label}: holds a {type(data).__name__}, not a dictionary of LoRA weights")
    return {str(k): v for k, v in data.items()}


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --- keys to modules -----------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    component: str
    name: str  # as the file names the layer (for messages)
    module: str | None  # the module path, once resolved
    key: str  # one of the file's keys for this layer (for messages)
    down: Any = None
    up: Any = None
    alpha: Any = None


def _classify(key: str) -> tuple[str, str, str, str]:
    """``(layout, component, layer name, part)`` of a key; part is down, up or alpha. LoraError for anything else."""
    for marker, kind in _OTHER_KINDS:
        if marker in key:
            raise LoraError(f"{key} is a {kind} weight; only plain LoRA (lora_down / lora_up) is supported")
    for prefix, component in _KOHYA_PREFIXES:
        if key.startswith(prefix):
            name, _, suffix = key[len(prefix) :].partition(".")
            if suffix in _KOHYA_SUFFIXES:
                return "kohya", component, name, _KOHYA_SUFFIXES[suffix]
            raise LoraError(f"unknown key {key!r}; kohya LoRA keys end in .lora_down.weight, .lora_up.weight or .alpha")
    rest = key.removeprefix("base_model.model.")  # PEFT's own save of a bare model: the U-Net
    component = "unet"
    for candidate in COMPONENTS:
        if rest.startswith(candidate + "."):
            component, rest = candidate, rest[len(candidate) + 1 :]
            break
    for suffix, part in _DIFFUSERS_SUFFIXES:
        if rest.endswith(suffix):
            name = rest[: -len(suffix)]
            if suffix in (".down.weight", ".up.weight") and not re.search(r"(^|\.)to_(q|k|v|out)_lora$", name):
                break
            return "diffusers", component, name, part
    raise LoraError(
        f"unknown key {key!r}: neither a kohya key (lora_unet_..., lora_te_...) nor a diffusers/PEFT one "
        "(unet....lora_A.weight)"
    )


def _diffusers_module(component: str, name: str) -> str:
    """The module path of a diffusers-layout layer name: processor-style names become the layer they adapt."""
    match = re.fullmatch(r"(.*?)(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora", name)
    if match is None:
        return name
    table = _PROCESSOR_NAMES["unet" if component == "unet" else "text_encoder"]
    return f"{match.group(1)}.{table[match.group(2)]}"


def _spellings(name: str, separator: str) -> tuple[str, ...]:
    """A layer name as the file spells it, and without or with CLIP's ``text_model`` level: transformers 5 flattened
    CLIPTextModel (``encoder.layers...``) while LoRA files keep ``text_model.encoder.layers...``."""
    level = "text_model" + separator
    return (name, name.removeprefix(level)) if name.startswith(level) else (name, level + name)


def _adaptable(module: torch.nn.Module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear | torch.nn.Conv2d)


def _underscore_table(component: torch.nn.Module) -> dict[str, str]:
    """Each Linear / Conv2d module's path with ``_`` for ``.`` (the kohya spelling) to its path; ambiguous ones out."""
    table: dict[str, str] = {}
    ambiguous: set[str] = set()
    for path, module in component.named_modules():
        if path and _adaptable(module):
            spelled = path.replace(".", "_")
            if spelled in table:
                ambiguous.add(spelled)
            table[spelled] = path
    for spelled in ambiguous:
        del table[spelled]
    return table


_SGM_RESNET = {"in_layers_2": "conv1", "emb_layers_1": "time_emb_proj", "out_layers_3": "conv2"}
_SGM_RESNET["skip_connection"] = "conv_shortcut"


def _sgm_name(name: str, unet: torch.nn.Module) -> str:
    """A kohya U-Net name in the original (LDM) block numbering, as kohya writes SDXL LoRAs, in diffusers' names.

    ``input_blocks.i.j``: i = 0 is conv_in; then each down block has ``layers_per_block`` (resnet, attention)
    rows and a downsampler. ``output_blocks.i.j``: each up block has ``layers_per_block + 1`` rows of (resnet,
    attention or upsampler, upsampler). ``middle_block.0/1/2``: resnet, attention, resnet.
    """
    fixed = {"input_blocks_0_0": "conv_in", "out_2": "conv_out", "time_embed_0": "time_embedding_linear_1"}
    fixed |= {"time_embed_2": "time_embedding_linear_2", "label_emb_0_0": "add_embedding_linear_1"}
    fixed |= {"label_emb_0_2": "add_embedding_linear_2"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"(input_blocks|middle_block|output_blocks)_(\d+)(?:_(\d+))?_(.+)", name)
    if match is None:
        return name
    kind, first, second, inner = match.group(1), int(match.group(2)), match.group(3), match.group(4)
    layers = int(unet.config.layers_per_block if isinstance(unet.config.layers_per_block, int) else 0)
    if kind == "middle_block":  # middle_block_N_rest: N is the row, there is no second index
        inner = f"{second}_{inner}" if second is not None else inner
        block = {0: "resnets_0", 1: "attentions_0", 2: "resnets_1"}.get(first)
        prefix = f"mid_block_{block}" if block else None
    elif second is None or layers <= 0:
        prefix = None
    elif kind == "input_blocks":
        block, row, sub = (first - 1) // (layers + 1), (first - 1) % (layers + 1), int(second)
        if row == layers:
            prefix = f"down_blocks_{block}_downsamplers_0"
            inner = "conv" if inner == "op" else inner
        else:
            prefix = f"down_blocks_{block}_{('resnets', 'attentions')[sub]}_{row}" if sub < 2 else None
    else:
        block, row, sub = first // (layers + 1), first % (layers + 1), int(second)
        blocks = getattr(unet, "up_blocks", [])
        has_attention = block < len(blocks) and hasattr(blocks[block], "attentions")
        if sub == 0:
            prefix = f"up_blocks_{block}_resnets_{row}"
        elif sub == 1 and has_attention:
            prefix = f"up_blocks_{block}_attentions_{row}"
        else:
            prefix = f"up_blocks_{block}_upsamplers_0"
    if prefix is None:
        return name
    if "resnets" in prefix:
        inner = _SGM_RESNET.get(inner, inner)
    return f"{prefix}_{inner}"


def _architecture_hint(entries: Sequence[_Entry]) -> str:
    """What model the LoRA seems made for, from its keys and its cross-attention widths; '' when unclear."""
    if any(e.component == "text_encoder_2" for e in entries) or any(
        re.match(r"(input_blocks|output_blocks|middle_block)_", e.name) for e in entries
    ):
        return " (it looks like an SDXL LoRA)"
    widths = {int(e.down.shape[1]) for e in entries if e.down is not None and re.search(r"attn2[._]to_[kv]$", e.name)}
    named = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
    found = [named[w] for w in sorted(widths) if w in named]
    return f" (its cross-attention takes {', '.join(map(str, sorted(widths)))} features: {found[0]})" if found else ""


# --- fitting to the model ------------------------------------------------------------------------------------------


def fit_lora(
    spec: LoraSpec,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str],
    components: Mapping[str, torch.nn.Module],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Lora:
    """Map a LoRA's keys to the modules of ``components`` (``unet``, ``text_encoder``, ``text_encoder_2``) and
    check every shape and value; the layers' tensors end up on ``device`` in ``dtype``."""
    label = _label(spec)
    if not tensors:
        raise LoraError(f"{label}: holds no tensors")
    entries: dict[tuple[str, str, str], _Entry] = {}
    for key in tensors:
        try:
            layout, component, name, part = _classify(str(key))
        except LoraError as exc:
            raise LoraError(f"{label}: {exc}") from None
        entry = entries.setdefault((layout, component, name), _Entry(component, name, None, str(key)))
        setattr(entry, part, tensors[key])
    found = list(entries.values())
    missing_parts = [e for e in found if e.down is None or e.up is None]
    if missing_parts:
        e = missing_parts[0]
        lacking = "down (lora_down / lora_A)" if e.down is None else "up (lora_up / lora_B)"
        raise LoraError(f"{label}: layer {e.name!r} has no {lacking} weight; the file is incomplete")
    hint = _architecture_hint(found)
    for component in sorted({e.component for e in found}):
        if components.get(component) is None:
            raise LoraError(f"{label}: adapts a {_COMPONENT_WORDS[component]}, which this model lacks{hint}")
    tables = {c: _underscore_table(m) for c, m in components.items() if m is not None}
    unknown: list[_Entry] = []
    for (layout, component, name), entry in entries.items():
        if layout == "kohya":
            spelled = _sgm_name(name, components["unet"]) if component == "unet" else name
            entry.module = next(
                (tables[component][n] for n in _spellings(spelled, "_") if n in tables[component]), None
            )
        else:
            for path in _spellings(_diffusers_module(component, name), "."):
                try:
                    module = components[component].get_submodule(path)
                except AttributeError:
                    continue
                if _adaptable(module):
                    entry.module = path
                    break
        if entry.module is None:
            unknown.append(entry)
    if unknown:
        e = unknown[0]
        raise LoraError(
            f"{label}: {len(unknown)} of its {len(found)} layers are not Linear or Conv2d layers of this model's "
            f"{_COMPONENT_WORDS[e.component]} (such as {e.key}); it was made for another model{hint}"
        )
    seen: dict[tuple[str, str], _Entry] = {}
    for entry in found:
        other = seen.setdefault((entry.component, entry.module), entry)
        if other is not entry:
            raise LoraError(f"{label}: {other.key} and {entry.key} both adapt {entry.module}; the file is ambiguous")
    scales = _metadata_alphas(label, metadata)
    layers: dict[str, list[LoraLayer]] = {}
    for entry in found:
        module = components[entry.component].get_submodule(entry.module)
        layer = _layer(label, entry, module, scales.get(entry.component), device, dtype, hint)
        layers.setdefault(entry.component, []).append(layer)
    return Lora(name=spec.name, layers={c: tuple(v) for c, v in layers.items()})


@dataclass(frozen=True)
class _Alphas:
    """A component's alphas from diffusers' ``lora_adapter_metadata``: PEFT's LoraConfig fields."""

    default: float | None
    patterns: Mapping[str, float]
    rslora: bool

    def alpha(self, module: str) -> float | None:
        for pattern, value in self.patterns.items():
            try:
                if re.match(rf"(.*\.)?({pattern})$", module):  # PEFT's own rule (peft.utils.other.get_pattern_key)
                    return value
            except re.error:
                continue
        return self.default


def _metadata_alphas(label: str, metadata: Mapping[str, str]) -> dict[str, _Alphas]:
    raw = metadata.get("lora_adapter_metadata")
    if raw is None:
        return {}
    try:
        packed = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise LoraError(f"{label}: its lora_adapter_metadata is not valid JSON") from None
    if not isinstance(packed, dict):
        raise LoraError(f"{label}: its lora_adapter_metadata is not a JSON object")
    result = {}
    for component in COMPONENTS:
        fields = {k[len(component) + 1 :]: v for k, v in packed.items() if k.startswith(component + ".")}
        if not fields:
            continue
        if fields.get("use_dora"):
            raise LoraError(f"{label}: is a DoRA adapter (use_dora in its metadata); only plain LoRA is supported")
        default = fields.get("lora_alpha")
        patterns = fields.get("alpha_pattern") or {}
        numbers = [default, *patterns.values()] if isinstance(patterns, dict) else [None]
        if not isinstance(patterns, dict) or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v))
            for v in numbers
        ):
            raise LoraError(f"{label}: its metadata's {component} lora_alpha / alpha_pattern are not numbers")
        result[component] = _Alphas(
            None if default is None else float(default),
            {str(k): float(v) for k, v in patterns.items()},
            bool(fields.get("use_rslora")),
        )
    return result


def _layer(
    label: str,
    entry: _Entry,
    module: torch.nn.Module,
    alphas: _Alphas | None,
    device: Any,
    dtype: Any,
    hint: str,
) -> LoraLayer:
    """One layer's tensors checked against its module and shaped for it; its alpha / rank."""
    import torch

    where = f"{label}: {entry.key.rsplit('.', 2)[0] if entry.key.count('.') >= 2 else entry.key}"
    down, up = entry.down, entry.up
    for part, tensor in (("down", down), ("up", up)):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise LoraError(f"{where}: its {part} weight is {kind}, not a floating-point tensor")
        if not bool(torch.isfinite(tensor).all()):
            raise LoraError(f"{where}: its {part} weight holds NaN or infinite values; the file is damaged")
    is_conv = isinstance(module, torch.nn.Conv2d)
    if is_conv:
        if module.groups != 1 or module.padding_mode != "zeros":
            raise LoraError(f"{where}: adapts a grouped or padded convolution, which is not supported")
        kernel = tuple(module.kernel_size)
        if down.dim() == 2 and kernel == (1, 1):  # a 1×1 convolution trained as a Linear layer
            down = down[:, :, None, None]
        if up.dim() == 2:
            up = up[:, :, None, None]
        want_down = f"(rank, {module.in_channels}, {kernel[0]}, {kernel[1]})"
        down_ok = down.dim() == 4 and tuple(down.shape[1:]) == (module.in_channels, *kernel)
        up_ok = up.dim() == 4 and up.shape[0] == module.out_channels and tuple(up.shape[2:]) == (1, 1)
        want_up = f"({module.out_channels}, rank, 1, 1)"
    else:
        if down.dim() == 4 and tuple(down.shape[2:]) == (1, 1):  # a Linear trained as a 1×1 convolution
            down = down[:, :, 0, 0]
        if up.dim() == 4 and tuple(up.shape[2:]) == (1, 1):
            up = up[:, :, 0, 0]
        want_down, want_up = f"(rank, {module.in_features})", f"({module.out_features}, rank)"
        down_ok = down.dim() == 2 and down.shape[1] == module.in_features
        up_ok = up.dim() == 2 and up.shape[0] == module.out_features
    if not down_ok or not up_ok:
        part, got, want = ("down", down, want_down) if not down_ok else ("up", up, want_up)
        raise LoraError(
            f"{where}: its {part} weight is {tuple(got.shape)} but {entry.module} needs {want}; "
            f"the LoRA was made for another model{hint}"
        )
    rank = int(down.shape[0])
    if up.shape[1] != rank or not 1 <= rank <= MAX_LORA_RANK:
        raise LoraError(
            f"{where}: its down weight has rank {rank} and its up weight rank {up.shape[1]}; they must agree "
            f"(1 to {MAX_LORA_RANK})"
        )
    alpha = _alpha(where, entry, alphas)
    scale = (alpha if alpha is not None else rank) / (math.sqrt(rank) if alphas and alphas.rslora else rank)
    target = {"device": device, "dtype": dtype or down.dtype}
    return LoraLayer(entry.module, down.to(**target).contiguous(), up.to(**target).contiguous(), scale)


def _alpha(where: str, entry: _Entry, alphas: _Alphas | None) -> float | None:
    """The layer's alpha: its ``.alpha`` key, else the metadata's, else None (alpha = rank)."""
    import torch

    if entry.alpha is not None:
        value = entry.alpha
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise LoraError(f"{where}: its alpha holds {value.numel()} values, not one")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise LoraError(f"{where}: its alpha {value!r} is not a finite number")
        return float(value)
    return alphas.alpha(entry.module) if alphas is not None else None


def load_lora(
    spec: LoraSpec,
    components: Mapping[str, torch.nn.Module],
    *,
    trust_pickle: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Lora:
    """Read ``spec``'s file and fit it to ``components``.

    A warm engine renders many jobs (every preview is one) with the same model and LoRAs, so the last few fitted
    LoRAs are kept, keyed by the file's state and the very modules they were fitted to (held weakly: a model that is
    let go is not kept alive by this cache)."""
    check_lora_file(spec, _label(spec), trust_pickle)
    state = _file_state(spec.path)
    key = (spec.name, state, tuple((c, id(m)) for c, m in sorted(components.items()) if m is not None))
    key += (str(device), str(dtype))
    cached = _FITTED.get(key)
    if cached is not None and all(ref() is components.get(c) for c, ref in cached[0].items()):
        return cached[1]
    tensors, metadata = read_lora_file(spec, trust_pickle)
    lora = fit_lora(spec, tensors, metadata, components, device=device, dtype=dtype)
    if state is not None:
        _FITTED[key] = ({c: weakref.ref(m) for c, m in components.items() if m is not None}, lora)
        while len(_FITTED) > FITTED_KEPT:
            del _FITTED[next(iter(_FITTED))]
        for module in components.values():  # a model let go takes its LoRAs' (GPU) memory with it
            if module is not None and id(module) not in _WATCHED:
                _WATCHED.add(id(module))
                weakref.finalize(module, _forget, id(module))
    return lora


FITTED_KEPT = 8
_FITTED: dict[tuple, tuple[dict[str, Any], Lora]] = {}
_WATCHED: set[int] = set()


def _forget(module_id: int) -> None:
    _WATCHED.discard(module_id)
    for key in [k for k in _FITTED if any(i == module_id for _, i in k[2])]:
        del _FITTED[key]


def _file_state(path: Path) -> tuple | None:
    """What tells a file's content changed without reading it: device, inode, size, modification time."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


# --- applying: forward hooks with a weight per sample --------------------------------------------------------------


class LoraSet:
    """The job's LoRAs, fitted to one model, applied with per-sample weights while a ``hooks`` block runs."""

    def __init__(self, loras: Sequence[Lora]) -> None:
        self.loras = list(loras)

    @property
    def text_encoder_names(self) -> tuple[str, ...]:
        """The LoRAs that change the text encoder(s): their weights are part of the prompt cache's key."""
        return tuple(lora.name for lora in self.loras if lora.has_text_encoder)

    @contextmanager
    def hooks(self, component: str, module: torch.nn.Module, weights: Mapping[str, ParamBatch]) -> Iterator[None]:
        """Add every LoRA's delta to ``module`` (the model's ``component``) for the duration of the block.

        ``weights[name]`` holds one weight per sample (per sample of the un-doubled batch under classifier-free
        guidance). A LoRA whose weights are all 0 gets no hook at all.
        """
        handles = []
        try:
            for lora in self.loras:
                batch = weights[lora.name]
                if not any(batch.values):
                    continue
                for layer in lora.layers.get(component, ()):
                    target = module.get_submodule(layer.path)
                    handles.append(target.register_forward_hook(_make_hook(lora.name, layer, batch)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def text_encoders(self, encoders: Mapping[str, torch.nn.Module], weights: Mapping[str, float]) -> Iterator[None]:
        """The text encoders with the LoRAs at one weight each (every prompt of the block is encoded with them)."""
        from .bends import ParamBatch

        batches = {lora.name: ParamBatch((float(weights.get(lora.name, 0.0)),)) for lora in self.loras}
        with ExitStack() as stack:
            for component, encoder in encoders.items():
                if encoder is not None:
                    stack.enter_context(self.hooks(component, encoder, batches))
            yield


def text_encoder_key(loras: LoraSet | None, weights: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """The part of a frame's LoRA weights that changes its prompts' embeddings: the cache key beside the prompt.
    Weights of 0 are left out, so a frame at 0 shares the embeddings of a job without LoRAs."""
    if loras is None:
        return ()
    return tuple((name, float(weights[name])) for name in loras.text_encoder_names if weights.get(name, 0.0) != 0.0)


def _make_hook(name: str, layer: LoraLayer, weights: ParamBatch):
    import torch
    import torch.nn.functional as F

    down, up = layer.down, layer.up
    is_conv = down.dim() == 4
    up_t = None if is_conv else up.t()
    scales: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        batch = output.shape[0]
        count = len(weights.values)
        if batch % count:
            raise LoraError(f"LoRA {name!r}: {count} weight(s) do not fit a batch of {batch} samples")
        x = inputs[0] if inputs[0].dtype == down.dtype else inputs[0].to(down.dtype)
        # The rank-r projection, small: the per-sample scale goes here, where it costs least
        low = F.conv2d(x, down, None, module.stride, module.padding, module.dilation) if is_conv else F.linear(x, down)
        key = (batch, low.dim())  # device and dtype are the layer's own, fixed for the hook's life
        cached = scales.get(key)
        if cached is None:
            # alpha / rank times each sample's weight (classifier-free guidance: both halves get the frame's weight),
            # in double precision on the host, then one copy to the device
            values = weights.values * (batch // count)
            shape = (batch,) + (1,) * (low.dim() - 1)
            scale = torch.tensor([v * layer.scale for v in values], dtype=low.dtype, device=low.device).view(shape)
            cached = scales[key] = (scale, None if all(values) else scale != 0)
        scale, keep = cached
        low = low * scale
        if keep is not None:  # a frame at weight 0 adds exactly nothing, even were its projection not finite
            low = torch.where(keep, low, 0.0)
        if is_conv:
            return output.add_(F.conv2d(low, up).to(output.dtype))
        if output.is_contiguous() and output.dtype == low.dtype:
            # output += low @ up^T in one accumulating matrix product: no delta the size of the output is made
            output.view(-1, output.shape[-1]).addmm_(low.reshape(-1, low.shape[-1]), up_t)
            return output
        return output.add_(F.linear(low, up).to(output.dtype))

    return hook
