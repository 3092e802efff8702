#pragma once
// pikv::cached_attention: attention over a fixed-capacity KV cache, as a LibTorch custom operator
// (torch.ops.pikv.cached_attention). It is what a model a user brings calls from its attention: an
// AOTInductor package or a TorchScript module exported with python/pikv_export, or a hand-written
// torch::nn::Module. The cache is the fixed-capacity layout of KVCache: keys/values [B, Hkv, C, d] and a
// slot map int64 [B, Hkv, C] holding every slot's logical position (-1 = empty), so graph shapes never
// change.
//
// Inside a ForwardScope (ExportedModel, ScriptedModel and hand-written models open one per forward) the
// operator runs the bound model's central attention function on the bound KVCache: it appends the new
// tokens, attends, and runs the press PressGuard installed on that model (prefill presses on the prefill,
// decoding presses on later forwards), compacting what is kept to the front of each head; head-wise
// presses keep per-head lengths. The graph's cache buffers must be the bound cache's buffers. Outside a
// scope it appends and attends on the given buffers, without a press.
//
// What the operator gives a press: the new keys/values and the whole cache, the post-RoPE queries (and
// the pre-RoPE ones, recovered by inverting the rotation with inv_freq), the layer's output projection
// when passed (CriticalKV), attention weights when the press needs them. There are no hidden states.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

namespace pikv::ops {

// The operator's schema (registered by libpikv in TORCH_LIBRARY(pikv, ...)).
const char* cached_attention_schema();

// query [B, H, T, d] post-RoPE; key / value [B, Hkv, T, d] (key post-RoPE) for the T new tokens;
// key_cache / value_cache [B, Hkv, C, d] and slots int64 [B, Hkv, C], mutated in place; positions int64
// [B, T], the logical positions of the new tokens (continuing the cache); inv_freq float32 [r], the
// layer's RoPE inverse frequencies (empty for a model without RoPE); out_weight [Dm, H * d], the output
// projection, or undefined; layer / num_layers: this layer's index and the model's layer count; scale:
// the softmax scale (0: 1/sqrt(d)); sliding_window: 0 or the window; softcap: 0 or the logit cap;
// rope_scaling: the cos/sin multiplier of the RoPE variant (1 for most). -> [B, H, T, d]
at::Tensor cached_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                            const at::Tensor& key_cache, const at::Tensor& value_cache, const at::Tensor& slots,
                            const at::Tensor& positions, const at::Tensor& inv_freq,
                            const std::optional<at::Tensor>& out_weight, int64_t layer, int64_t num_layers,
                            double scale, int64_t sliding_window, double softcap, double rope_scaling);

// The shape-only version export traces with (symbolic sizes): an empty tensor shaped like `query`.
at::Tensor cached_attention_meta(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                 const at::Tensor& key_cache, const at::Tensor& value_cache, const at::Tensor& slots,
                                 const at::Tensor& positions, const at::Tensor& inv_freq,
                                 const std::optional<at::Tensor>& out_weight, int64_t layer, int64_t num_layers,
                                 double scale, int64_t sliding_window, double softcap, double rope_scaling);

// The message of the last error the operator raised on this thread, cleared by the call ("" when none).
// A graph runtime wraps the operator's exception in its own text (AOTInductor: "run_func_(...) API call
// failed", the message only on stderr; TorchScript: the interpreter's traceback), so GraphModel asks here
// for the operator's own message. Each thread has its own, as each runs its own graph calls.
std::string take_operator_error();

// True once libpikv's operator registration ran in this process (a model file that calls the operator
// needs it).
bool operator_registered();

}  // namespace pikv::ops

#ifdef PIKV_HEADER_ONLY
#include <pikv/ops/detail/cached_attention-inl.h>
#endif
