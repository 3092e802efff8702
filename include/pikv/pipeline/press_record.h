#pragma once
// What a press did to every layer of one request: the tokens each (batch row, KV head) kept and the
// scores it ranked them by. `pikv score` writes this as a safetensors file and the parity tests
// compare it with kvpress's; users can call it to inspect a press on their own model and input.

#include <ATen/core/Tensor.h>

#include <pikv/core/press.h>
#include <pikv/core/causal_lm.h>

#include <map>
#include <string>

namespace pikv {

struct PressRecordOptions {
  // Token ids fed one at a time after the prefill (decoding presses act on them). int64 [B, s] or
  // undefined.
  at::Tensor decode_tokens;
  // Also record the stored cache: layer{l}.keys / layer{l}.values [B, Hkv, n_max, d] (zero padding).
  bool save_kv = false;
  // Also return `logits` float32 [B, s, V]: the logits of the decode tokens.
  bool return_logits = false;
};

// Runs input_ids (int64 [B, T]) through `model` with `press` installed (nullptr: no press), then the
// decode tokens, and returns, per layer l:
//   layer{l}.kept    int64 [B, Hkv, k]: logical positions of the stored tokens, ascending; head-wise
//                    layers pad with -1 up to the longest head; original positions also after
//                    KeyRerotation.
//   layer{l}.scores  float32 [B, Hkv, n]: the scores of the press's scorer (Press::scorer()) at its
//                    last compression of the layer; absent for presses without a scorer.
//   layer{l}.pruned_channels  int64 [B, Hkv, p]: ThinK only, the zeroed key channels.
//   layer{l}.bytes   int64 [2]: KV bytes of the layer before and after its prefill compression (when
//                    the press compressed it during the prefill).
// The model runs in its own dtype; scores are converted to float32.
[[nodiscard]] std::map<std::string, at::Tensor> record_press(CausalLM& model, const at::Tensor& input_ids, Press* press,
                                               const PressRecordOptions& options = {});

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/pipeline/detail/press_record-inl.h>
#endif
