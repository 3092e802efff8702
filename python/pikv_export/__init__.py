"""Export a transformers causal LM so that PiKVPress presses run inside it from C++.

The model's attention is routed to the ``pikv::cached_attention`` operator (libpikv) through
transformers' AttentionInterface; a fixed-capacity KV cache is added as buffers; the result is written as
an AOTInductor package (``.pt2``, loaded by ``pikv::ExportedModel``) or a TorchScript file (``.pt``,
loaded by ``pikv::ScriptedModel``). In C++, ``pikv::PressGuard`` then compresses that model's cache
exactly as it does for PiKVPress's own decoder.

    import pikv_export
    model = AutoModelForCausalLM.from_pretrained(path)
    wrapped = pikv_export.attach(model, capacity=8192)
    pikv_export.save_aoti(wrapped, "model.pt2")          # or save_torchscript(wrapped, "model.pt")

Command line: ``python -m pikv_export --model DIR --out FILE.pt2|FILE.pt --capacity N``.
"""

from .export import (FORMAT, FORMAT_VERSION, ExportError, PikvCache, PikvCausalLM, attach, load_model,
                     load_operator, metadata, save_aoti, save_torchscript)

__all__ = ["FORMAT", "FORMAT_VERSION", "ExportError", "PikvCache", "PikvCausalLM", "attach", "load_model",
           "load_operator", "metadata", "save_aoti", "save_torchscript"]
