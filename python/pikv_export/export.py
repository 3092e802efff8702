"""Attach the pikv::cached_attention operator to a transformers causal LM and export it.

How it works: transformers' attention modules (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 3, ...) call
an attention function looked up by name in ``AttentionInterface``; ``attach`` registers one named
"pikv" that calls ``torch.ops.pikv.cached_attention`` with the layer's cache buffers, the token
positions, the layer's RoPE inverse frequencies and its output projection. The model then runs with
``use_cache=False`` and no mask (a custom attention implementation gets none): the operator owns the
cache and the masking. The cache is a fixed-capacity buffer set (``PikvCache``) so that the exported
graph has static shapes; in C++ the host binds its own tensors to those buffers.
"""

import json
import os
from pathlib import Path

import torch
from torch import nn

FORMAT = "pikv-exported-model"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExportError(RuntimeError):
    """A model or request pikv_export cannot handle, with the reason."""


def _default_library():
    env = os.environ.get("PIKV_LIBRARY")
    if env:
        return env
    # python/pikv_export/export.py -> the repository's build/bin/libpikv.so
    repo = Path(__file__).resolve().parents[2]
    for build in ("build", "build-new"):
        candidate = repo / build / "bin" / "libpikv.so"
        if candidate.exists():
            return str(candidate)
    return None


def load_operator(library=None):
    """Loads libpikv (which registers torch.ops.pikv.cached_attention) unless it is loaded already."""
    if hasattr(torch.ops, "pikv") and hasattr(torch.ops.pikv, "cached_attention"):
        return
    path = library or _default_library()
    if path is None or not os.path.exists(path):
        raise ExportError("the pikv operator library is not loaded and libpikv.so was not found; build PiKVPress "
                          "(./scripts/setup.sh) or pass --library / set PIKV_LIBRARY to build/bin/libpikv.so")
    try:
        torch.ops.load_library(path)
    except OSError as e:
        raise ExportError(f"cannot load the pikv operator library '{path}': {e.__cause__ or e}") from e
    if not hasattr(torch.ops.pikv, "cached_attention"):
        raise ExportError(f"{path} did not register torch.ops.pikv.cached_attention (is it libpikv?)")


def load_model(path, dtype="float32", device="cpu"):
    """A transformers causal LM from a checkpoint folder or a GGUF file, in eval mode."""
    from transformers import AutoModelForCausalLM
    if dtype not in _DTYPES:
        raise ExportError(f"dtype must be one of {', '.join(_DTYPES)}, got '{dtype}'")
    p = Path(path)
    if not p.exists():
        raise ExportError(f"model path '{path}' does not exist")
    try:
        if p.is_file() and p.suffix == ".gguf":
            model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=_DTYPES[dtype])
        else:
            model = AutoModelForCausalLM.from_pretrained(str(p), dtype=_DTYPES[dtype])
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"transformers cannot load '{path}': {e}") from e
    return model.to(device).eval()


class PikvCache(nn.Module):
    """The fixed-capacity KV cache as buffers: per layer keys/values [B, Hkv, C, d] and the slot map
    int64 [B, Hkv, C] (the logical position in each slot, -1 = empty)."""

    def __init__(self, num_layers, batch, kv_heads, capacity, head_dim, dtype, device):
        super().__init__()
        self.num_layers = num_layers
        for l in range(num_layers):
            self.register_buffer(f"key_{l}", torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype, device=device))
            self.register_buffer(f"value_{l}", torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype, device=device))
            self.register_buffer(f"slots_{l}", torch.full((batch, kv_heads, capacity), -1, dtype=torch.long, device=device))

    def layer(self, l):
        return getattr(self, f"key_{l}"), getattr(self, f"value_{l}"), getattr(self, f"slots_{l}")

    @torch.no_grad()
    def reset(self):
        for l in range(self.num_layers):
            k, v, s = self.layer(l)
            k.zero_()
            v.zero_()
            s.fill_(-1)



def _pikv_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention-function signature; returns ([B, T, H, d], None)."""
    route = getattr(module, "_pikv_route", None)
    if route is None:
        raise ExportError(f"attention module {type(module).__name__} was not attached by pikv_export.attach")
    wrapper, layer = route
    positions = kwargs.get("position_ids")
    if positions is None:
        raise ExportError("the model did not pass position_ids to its attention function")
    k_cache, v_cache, slots = wrapper.pikv_cache.layer(layer)
    inv_freq, rope_scaling = wrapper.rope_of(layer)
    out_weight = module.o_proj.weight if hasattr(module, "o_proj") else None
    scale = float(scaling) if scaling is not None else 0.0
    window = kwargs.get("sliding_window") or 0
    softcap = kwargs.get("softcap") or 0.0
    out = torch.ops.pikv.cached_attention(query, key, value, k_cache, v_cache, slots, positions, inv_freq, out_weight,
                                          layer, wrapper.num_layers, scale, int(window), float(softcap),
                                          float(rope_scaling))
    return out.transpose(1, 2).contiguous(), None


class PikvCausalLM(nn.Module):
    """forward(input_ids [B, T], positions [B, T]) -> logits [B, T, V], attention through the operator."""

    def __init__(self, model, capacity, batch=1):
        super().__init__()
        from transformers import AttentionInterface
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.model = model
        self.capacity = int(capacity)
        self.batch = int(batch)
        self.num_layers = config.num_hidden_layers
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = getattr(config, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.vocab_size = config.vocab_size
        self.model_type = config.model_type
        self.layer_types = getattr(config, "layer_types", None)
        param = next(model.parameters())
        self.dtype, self.device = param.dtype, param.device
        attention = self._attention_modules()
        if len(attention) != self.num_layers:
            raise ExportError(f"{type(model).__name__}: found {len(attention)} attention modules with a layer_idx for "
                              f"{self.num_layers} layers; only models whose attention goes through transformers' "
                              "AttentionInterface are supported (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 3, ...)")
        self.rotary = self._rotary_module()
        self.pikv_cache = PikvCache(self.num_layers, self.batch, self.num_kv_heads, self.capacity, self.head_dim,
                                    self.dtype, self.device)
        AttentionInterface.register("pikv", _pikv_attention)
        model.set_attn_implementation("pikv")
        for l, m in attention.items():
            # A plain attribute (not a registered submodule: the wrapper contains the module).
            object.__setattr__(m, "_pikv_route", (self, l))

    def _attention_modules(self):
        found = {}
        for m in self.model.modules():
            if hasattr(m, "layer_idx") and (hasattr(m, "q_proj") or hasattr(m, "qkv_proj")) and hasattr(m, "o_proj"):
                found[int(m.layer_idx)] = m
        return found

    def _rotary_module(self):
        for name, m in self.model.named_modules():
            if name.endswith("rotary_emb"):
                return m
        return None

    def rope_of(self, layer):
        """(inv_freq float32 [r], attention_scaling) of a layer; an empty inv_freq without RoPE."""
        r = self.rotary
        if r is None:
            return torch.zeros(0, dtype=torch.float32, device=self.device), 1.0
        if hasattr(r, "inv_freq"):
            return r.inv_freq, float(getattr(r, "attention_scaling", 1.0))
        layer_type = self.layer_types[layer]
        return getattr(r, f"{layer_type}_inv_freq"), float(getattr(r, f"{layer_type}_attention_scaling", 1.0))

    def forward(self, input_ids, positions):
        out = self.model(input_ids=input_ids, position_ids=positions, cache_position=positions[0], use_cache=False)
        return out.logits


def attach(model, capacity, batch=1):
    """Routes the model's attention to the pikv operator and adds the cache buffers: -> PikvCausalLM."""
    load_operator()
    if capacity < 1:
        raise ExportError(f"capacity must be >= 1, got {capacity}")
    return PikvCausalLM(model, capacity, batch).eval()


def metadata(wrapped):
    """What pikv::GraphModelInfo reads (strings only)."""
    names = ";".join(f"pikv_cache.key_{l},pikv_cache.value_{l},pikv_cache.slots_{l}" for l in range(wrapped.num_layers))
    dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[wrapped.dtype]
    return {"pikv.format": FORMAT, "pikv.version": str(FORMAT_VERSION), "num_layers": str(wrapped.num_layers),
            "num_heads": str(wrapped.num_heads), "num_kv_heads": str(wrapped.num_kv_heads),
            "head_dim": str(wrapped.head_dim), "vocab_size": str(wrapped.vocab_size), "batch": str(wrapped.batch),
            "capacity": str(wrapped.capacity), "dtype": dtype, "device": wrapped.device.type,
            "model_type": str(wrapped.model_type), "cache_names": names}


def _example(wrapped, tokens=8):
    t = max(2, min(tokens, wrapped.capacity))
    ids = torch.zeros((wrapped.batch, t), dtype=torch.long, device=wrapped.device)
    pos = torch.arange(t, device=wrapped.device).unsqueeze(0).expand(wrapped.batch, t).contiguous()
    return ids, pos


def save_aoti(wrapped, path):
    """torch.export (dynamic sequence length up to the capacity) + AOTInductor -> a .pt2 package."""
    ids, pos = _example(wrapped)
    seq = torch.export.Dim("seq", min=1, max=wrapped.capacity)
    wrapped.pikv_cache.reset()
    with torch.no_grad():
        program = torch.export.export(wrapped, (ids, pos), dynamic_shapes=({1: seq}, {1: seq}), strict=False)
    # Packaged constants keep the buffers' contents: they must be empty.
    wrapped.pikv_cache.reset()
    torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                             inductor_configs={"aot_inductor.metadata": metadata(wrapped)})


def save_torchscript(wrapped, path):
    """torch.jit.trace -> a .pt file with the metadata as the extra file pikv.json."""
    ids, pos = _example(wrapped)
    wrapped.pikv_cache.reset()
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, (ids, pos), check_trace=False, strict=False)
    # Tracing ran the operator on the buffers: empty them again before saving.
    for name, buf in traced.named_buffers():
        if name.startswith("pikv_cache."):
            if name.split(".")[-1].startswith("slots"):
                buf.fill_(-1)
            else:
                buf.zero_()
    wrapped.pikv_cache.reset()
    torch.jit.save(traced, str(path), _extra_files={"pikv.json": json.dumps(metadata(wrapped))})
