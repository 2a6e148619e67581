"""A GGUF base written out as a Hugging Face folder one tensor at a time.

transformers' own ``from_pretrained(gguf_file=…)`` builds the whole model in memory while the
GGUF's pages are mapped in beside it: converting a Llama-3.2-3B-shaped base peaked at 12.8 GiB,
more than training it (bench/README.md, families.py). Here each tensor is read, dequantized,
put into transformers' layout by transformers' own name map and tensor processor (llama's q/k
rows un-permuted, Gemma's norms stored as ``w`` instead of ``1 + w``), cast to the copy's dtype
and added to the current safetensors shard; the file pages it came from are dropped from the
process at once. What the conversion holds is one shard and one tensor in float32, whatever
the base's size. ``tests/training/test_gguf_convert.py`` checks the result tensor for tensor
against transformers' loading, for every family of the architecture table.
"""

from __future__ import annotations

import json
import math
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.domain.architectures import GgufTensor, read_gguf_header

if TYPE_CHECKING:
    import torch

# Small enough to be a fraction of a 1B base's copy, large enough that a 3B base is a few
# dozen files. A tensor larger than this (a 128k-token embedding) is a shard of its own.
SHARD_BYTES = 512 * 2**20
INDEX = "model.safetensors.index.json"


class UnmappedTensors(ValueError):
    """The GGUF's tensors do not fill the model its metadata describes."""


def convert(source: Path, target: Path, dtype: torch.dtype) -> None:
    """Write ``target`` (created): config.json, generation_config.json and the weights of the
    GGUF ``source`` in ``dtype``, as ``from_pretrained(target)`` reads them. The tokenizer is
    the caller's to save.

    Raises ``UnmappedTensors`` when a parameter of the model gets no tensor from the file, or
    one of another shape.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    needed = {name for name, _ in skeleton.named_parameters()}  # a tied weight counted once
    written = _write_shards(_shaped(_hf_tensors(source, skeleton, dtype), skeleton), target)
    missing = needed - set(written)
    if missing:
        raise UnmappedTensors(f"{source.name} has no tensor for {sorted(missing)[:5]} "
                              f"({len(missing)} parameters in all)")
    config.architectures = [type(skeleton).__name__]
    config.dtype = dtype
    config.save_pretrained(target)
    if skeleton.can_generate():
        skeleton.generation_config.save_pretrained(target)


def _hf_tensors(source: Path, skeleton: Any, dtype: torch.dtype
                ) -> Iterator[tuple[str, torch.Tensor]]:
    """Each GGUF tensor as (transformers' parameter name, tensor in ``dtype``), in file order.
    The tensor table comes from tunegate's header reader: the ``gguf`` package's reader would
    parse the whole vocabulary again (8 s for Gemma's 262k tokens) to find it."""
    import numpy as np
    import torch
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    header = read_gguf_header(source)
    architecture = str(header.values["general.architecture"])
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(
        config=skeleton.config.to_dict())
    names = get_gguf_hf_weights_map(skeleton, processor)
    sideband: dict[str, Any] = {"tensors": {}}
    # Not closed by hand: numpy views of it may outlive the loop; it unmaps with the last one.
    with source.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    for name, tensor in header.tensors.items():
        result = processor.process(weights=_dequantized(mapped, tensor), name=name,
                                   tensor_key_mapping=names, parsed_parameters=sideband)
        if sideband["tensors"]:
            # Mixture-of-experts processors assemble parameters across tensors.
            raise UnmappedTensors(f"{architecture}: its tensors are not converted one by one")
        if result.name in names:
            # A float tensor comes back as a read-only view of the map: copied (into memory
            # this process owns) only then.
            weights = np.require(result.weights, requirements=["C_CONTIGUOUS", "WRITEABLE"])
            yield names[result.name], torch.from_numpy(weights).to(dtype)
        _drop_pages(mapped, tensor)


def _dequantized(mapped: mmap.mmap, tensor: GgufTensor) -> Any:
    """``tensor``'s values as float32 (a float type's as they are), in numpy's order (the
    output features first), as the ``gguf`` package's reader and ``dequantize`` give them."""
    import numpy as np
    from gguf import GGMLQuantizationType, dequantize, quant_shape_to_byte_shape

    kind = GGMLQuantizationType(tensor.type_id)
    shape = tuple(reversed(tensor.shape))
    plain: dict[GGMLQuantizationType, Any] = {GGMLQuantizationType.F32: np.float32,
                                              GGMLQuantizationType.F16: np.float16}
    dtype: Any = plain.get(kind, np.uint8)
    byte_shape = shape if kind in plain else quant_shape_to_byte_shape(shape, kind)
    data = np.frombuffer(mapped, dtype=np.uint8, count=_n_bytes(tensor), offset=tensor.offset)
    return dequantize(data.view(dtype).reshape(byte_shape), kind)


def _shaped(tensors: Iterator[tuple[str, torch.Tensor]], skeleton: Any
            ) -> Iterator[tuple[str, torch.Tensor]]:
    """``tensors``, each checked against the shape the model's config gives its parameter
    (a config read wrongly from the GGUF fails here, naming the tensor, before a shard is
    written)."""
    shapes = {name: tuple(value.shape) for name, value in skeleton.state_dict().items()}
    for name, tensor in tensors:
        if tuple(tensor.shape) != shapes[name]:
            raise UnmappedTensors(f"{name} is {tuple(tensor.shape)} in the GGUF but "
                                  f"{shapes[name]} in the model its metadata describes")
        yield name, tensor


def _n_bytes(tensor: GgufTensor) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.type_id)]
    return math.prod(tensor.shape) // block * size


def _drop_pages(mapped: mmap.mmap, tensor: GgufTensor) -> None:
    """Unmap the pages of ``tensor`` from this process (they stay in the page cache): read
    through a memory map, a file's pages would otherwise count in the resident memory until
    the end, as much as the whole GGUF."""
    start = tensor.offset - tensor.offset % mmap.PAGESIZE
    mapped.madvise(mmap.MADV_DONTNEED, start, tensor.offset + _n_bytes(tensor) - start)


def _write_shards(tensors: Iterator[tuple[str, torch.Tensor]], target: Path) -> dict[str, str]:
    """Write ``tensors`` into safetensors shards of about SHARD_BYTES; answer which file holds
    each name (one file is ``model.safetensors``; more get an index, as transformers writes)."""
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    where: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    size = total = 0
    files: list[Path] = []

    def flush() -> None:
        nonlocal shard, size
        path = target / f"model-{len(files) + 1:05d}.safetensors"
        save_file(shard, path, metadata={"format": "pt"})
        files.append(path)
        where.update(dict.fromkeys(shard, path.name))
        shard, size = {}, 0

    for name, tensor in tensors:
        shard[name] = tensor
        size += tensor.numel() * tensor.element_size()
        total += tensor.numel() * tensor.element_size()
        if size >= SHARD_BYTES:
            flush()
    if shard or not files:
        flush()
    if len(files) == 1:
        files[0].rename(target / "model.safetensors")
        return dict.fromkeys(where, "model.safetensors")
    (target / INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                            "weight_map": where}, indent=2))
    return where
