// Registers torch.ops.pikv.cached_attention with LibTorch's dispatcher (CPU, CUDA and Meta kernels).
// Compiled once into libpikv: loading libpikv (linking it, or torch.ops.load_library in Python) makes the
// operator available to TorchScript modules and AOTInductor packages that call it. Not part of the
// header-only build (a registration must happen in exactly one translation unit): header-only consumers
// that run exported models compile this file too.
#include <pikv/ops/cached_attention.h>

#include <torch/library.h>

TORCH_LIBRARY(pikv, m) { m.def(pikv::ops::cached_attention_schema()); }

TORCH_LIBRARY_IMPL(pikv, CPU, m) { m.impl("cached_attention", &pikv::ops::cached_attention); }

TORCH_LIBRARY_IMPL(pikv, CUDA, m) { m.impl("cached_attention", &pikv::ops::cached_attention); }

TORCH_LIBRARY_IMPL(pikv, Meta, m) { m.impl("cached_attention", &pikv::ops::cached_attention_meta); }
