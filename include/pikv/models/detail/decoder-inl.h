#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/models/decoder.h>
#include <pikv/models/loader.h>
#include <pikv/models/rope.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <mutex>

namespace pikv {
namespace detail {

enum class NormKind { rms, rms_gemma, layer };

// RMSNorm as Llama (weight * normalised.to(dtype)), as Gemma ((normalised * (1 + w)) in float32), or
// GPT-2's LayerNorm.
// An undefined weight is the identity (a norm the family does not have).
struct Norm {
  at::Tensor weight, bias;
  NormKind kind = NormKind::rms;
  double eps = 1e-6;

  at::Tensor operator()(const at::Tensor& x) const {
    if (!weight.defined()) return x;
    if (kind == NormKind::layer) return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
    at::Tensor xf = x.to(at::kFloat);
    xf = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
    if (kind == NormKind::rms_gemma) return (xf * (1.0 + weight.to(at::kFloat))).to(x.scalar_type());
    return weight * xf.to(x.scalar_type());
  }
};

enum class Activation { silu, gelu, gelu_tanh };

inline Activation parse_activation(const std::string& act) {
  if (act == "silu") return Activation::silu;
  if (act == "gelu") return Activation::gelu;
  return Activation::gelu_tanh;  // gelu_pytorch_tanh, gelu_new, gelu_fast
}

inline at::Tensor activate(Activation act, const at::Tensor& x) {
  switch (act) {
    case Activation::silu: return at::silu(x);
    case Activation::gelu: return at::gelu(x);
    case Activation::gelu_tanh: return at::gelu(x, "tanh");
  }
  return x;
}

// A Linear weight [out, in] re-laid in memory as [in, out] (returned as the same-shaped view): MKL's
// matrix-vector path for x @ W with W stored [in, out] streams weights about 1.6x faster than with
// [out, in] on the CPU, and decoding is bound by reading the weights once per token.
inline at::Tensor gemv_layout(const at::Tensor& w) { return w.t().contiguous().t(); }

// Forwards with more tokens than this (batch x length) run the MLP on slices of the sequence.
constexpr int64_t kMlpChunkTokens = 16384;

// A Linear weight [out, in]: a dense matrix in GEMV layout, or GGUF blocks that
// ops::quantized_linear runs without dequantising.
struct LinearWeight {
  at::Tensor dense;
  ops::QuantizedMatrix quantized;

  bool defined() const { return dense.defined() || quantized.defined(); }
  // x [..., in] -> [..., out]; b [out] or undefined.
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& b = {}) const {
    if (quantized.defined()) return ops::quantized_linear(x, quantized, b);
    return b.defined() ? at::linear(x, dense, b) : at::linear(x, dense);
  }
  // The matrix [out, in] in the compute dtype (dequantised on each call for blocks).
  at::Tensor matrix() const { return quantized.defined() ? quantized.dequantize() : dense; }
  LinearWeight narrow_rows(int64_t start, int64_t length) const {
    if (quantized.defined()) return {at::Tensor(), quantized.narrow_rows(start, length)};
    return {gemv_layout(dense.narrow(0, start, length)), {}};
  }
  int64_t bytes() const { return quantized.defined() ? quantized.nbytes() : dense.numel() * dense.element_size(); }
};

// Takes named tensors out of a WeightMap (and quantized matrices out of a QuantizedWeightMap), checking
// shapes and converting to the compute options.
class WeightReader {
 public:
  WeightReader(WeightMap& map, QuantizedWeightMap& quantized, at::TensorOptions options, std::string source)
      : map_(map), quantized_(quantized), options_(options), source_(std::move(source)) {
    // The kernels take float32 inputs on the CPU; other compute options dequantise at load.
    keep_quantized_ = options.dtype() == at::kFloat && options.device().is_cpu();
  }

  bool has(const std::string& name) const { return map_.count(name) != 0 || quantized_.count(name) != 0; }

  // A Linear weight: its blocks when it came quantized (and the compute options allow), else dense.
  LinearWeight take_linear(const std::string& name, std::vector<int64_t> shape) {
    auto it = quantized_.find(name);
    if (it == quantized_.end() || !keep_quantized_) return {gemv_layout(take(name, std::move(shape))), {}};
    ops::QuantizedMatrix q = std::move(it->second);
    quantized_.erase(it);
    PIKV_CHECK(std::vector<int64_t>({q.rows(), q.cols()}) == shape,
               "{}: tensor '{}' has shape [{}, {}], the config implies [{}]", source_, name, q.rows(), q.cols(),
               fmt::join(shape, ", "));
    return {at::Tensor(), std::move(q)};
  }

  at::Tensor take(const std::string& name, std::vector<int64_t> shape) {
    auto qit = quantized_.find(name);
    if (qit != quantized_.end()) {  // blocks where a dense tensor is needed: dequantise
      map_[name] = qit->second.dequantize();
      quantized_.erase(qit);
    }
    auto it = map_.find(name);
    PIKV_CHECK(it != map_.end(), "{}: missing tensor '{}'", source_, name);
    at::Tensor t = std::move(it->second);
    map_.erase(it);
    PIKV_CHECK(t.sizes().vec() == shape, "{}: tensor '{}' has shape [{}], the config implies [{}]", source_, name,
               fmt::join(t.sizes(), ", "), fmt::join(shape, ", "));
    PIKV_CHECK(at::isFloatingType(t.scalar_type()), "{}: tensor '{}' has non-floating dtype {}", source_, name,
               dtype_name(t.scalar_type()));
    return t.to(options_).contiguous();
  }

  at::Tensor take_if(bool wanted, const std::string& name, std::vector<int64_t> shape) {
    return wanted ? take(name, std::move(shape)) : at::Tensor();
  }

  void finish() const {
    std::vector<std::string> left;
    for (const auto& entry : quantized_) left.push_back(entry.first);
    for (const auto& [name, t] : map_)
      if (name.find("rotary_emb.inv_freq") == std::string::npos && name.find(".attn.bias") == std::string::npos &&
          name.find(".attn.masked_bias") == std::string::npos && name != "lm_head.weight")
        left.push_back(name);
    if (!left.empty()) log::warn("{}: {} tensors not used by the model, e.g. '{}'", source_, left.size(), left.front());
  }

 private:
  WeightMap& map_;
  QuantizedWeightMap& quantized_;
  at::TensorOptions options_;
  std::string source_;
  bool keep_quantized_ = false;
};

}  // namespace detail

// One decoder layer: its weights and what its family does differently, as data (which norms exist, a
// gated or plain MLP, its RoPE, its attention parameters, whether presses see it).
class DecoderModel::Layer : public AttentionLayerView {
 public:
  // `prefix`: where the layers' tensors live ("model.layers." or GPT-2's "transformer.h." / "h.").
  Layer(const ModelConfig& c, int64_t index, detail::WeightReader& w, const std::string& prefix)
      : c_(c), index_(index), act_(detail::parse_activation(c.hidden_act)) {
    using detail::gemv_layout;
    auto dense = [](const at::Tensor& t) { return detail::LinearWeight{gemv_layout(t), {}}; };
    const int64_t D = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, d = c.head_dim, I = c.intermediate_size;
    const detail::NormKind kind = c.arch == Architecture::gemma3 ? detail::NormKind::rms_gemma
                                  : c.arch == Architecture::gpt2 ? detail::NormKind::layer
                                                                 : detail::NormKind::rms;
    auto norm = [&](const std::string& name, int64_t dim) {
      detail::Norm n;
      n.kind = kind;
      n.eps = c.norm_eps;
      n.weight = w.take(name + ".weight", {dim});
      if (kind == detail::NormKind::layer) n.bias = w.take(name + ".bias", {dim});
      return n;
    };
    params_.scale = c.attention_scale > 0 ? c.attention_scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    if (c.is_sliding(index)) params_.sliding_window = c.sliding_window;
    params_.softcap = c.attn_logit_softcapping;
    // Gemma 3's sliding-window layers only ever attend to their window: a press never sees them.
    pressable_ = !(c.arch == Architecture::gemma3 && c.is_sliding(index));
    const std::string p = prefix + std::to_string(index) + ".";
    if (c.arch == Architecture::gpt2) {
      attn_norm_ = norm(p + "ln_1", D);
      mlp_norm_ = norm(p + "ln_2", D);
      // Conv1D stores [in, out]: transpose to Linear's [out, in]; c_attn rows are q, k, v.
      at::Tensor qkv = w.take(p + "attn.c_attn.weight", {D, 3 * D}).t();
      at::Tensor qkv_b = w.take(p + "attn.c_attn.bias", {3 * D});
      auto ws = qkv.split(D, 0);
      auto bs = qkv_b.split(D, 0);
      wq_ = dense(ws[0]), wk_ = dense(ws[1]), wv_ = dense(ws[2]);
      bq_ = bs[0].contiguous(), bk_ = bs[1].contiguous(), bv_ = bs[2].contiguous();
      wo_ = dense(w.take(p + "attn.c_proj.weight", {D, D}).t());
      bo_ = w.take(p + "attn.c_proj.bias", {D});
      up_ = dense(w.take(p + "mlp.c_fc.weight", {D, I}).t());
      up_b_ = w.take(p + "mlp.c_fc.bias", {I});
      down_ = dense(w.take(p + "mlp.c_proj.weight", {I, D}).t());
      down_b_ = w.take(p + "mlp.c_proj.bias", {D});
      return;  // learned positions: no RoPE (inv_freq_ stays undefined)
    }
    attn_norm_ = norm(p + "input_layernorm", D);
    if (c.arch == Architecture::gemma3) {
      attn_out_norm_ = norm(p + "post_attention_layernorm", D);
      mlp_norm_ = norm(p + "pre_feedforward_layernorm", D);
      mlp_out_norm_ = norm(p + "post_feedforward_layernorm", D);
    } else {
      mlp_norm_ = norm(p + "post_attention_layernorm", D);
    }
    if (c.arch == Architecture::phi3) {
      const detail::LinearWeight qkv = w.take_linear(p + "self_attn.qkv_proj.weight", {(H + 2 * Hkv) * d, D});
      wq_ = qkv.narrow_rows(0, H * d);
      wk_ = qkv.narrow_rows(H * d, Hkv * d);
      wv_ = qkv.narrow_rows((H + Hkv) * d, Hkv * d);
      const detail::LinearWeight gate_up = w.take_linear(p + "mlp.gate_up_proj.weight", {2 * I, D});
      gate_ = gate_up.narrow_rows(0, I);
      up_ = gate_up.narrow_rows(I, I);
    } else {
      wq_ = w.take_linear(p + "self_attn.q_proj.weight", {H * d, D});
      wk_ = w.take_linear(p + "self_attn.k_proj.weight", {Hkv * d, D});
      wv_ = w.take_linear(p + "self_attn.v_proj.weight", {Hkv * d, D});
      bq_ = w.take_if(c.qkv_bias, p + "self_attn.q_proj.bias", {H * d});
      bk_ = w.take_if(c.qkv_bias, p + "self_attn.k_proj.bias", {Hkv * d});
      bv_ = w.take_if(c.qkv_bias, p + "self_attn.v_proj.bias", {Hkv * d});
      gate_ = w.take_linear(p + "mlp.gate_proj.weight", {I, D});
      up_ = w.take_linear(p + "mlp.up_proj.weight", {I, D});
      gate_b_ = w.take_if(c.mlp_bias, p + "mlp.gate_proj.bias", {I});
      up_b_ = w.take_if(c.mlp_bias, p + "mlp.up_proj.bias", {I});
    }
    wo_ = w.take_linear(p + "self_attn.o_proj.weight", {D, H * d});
    bo_ = w.take_if(c.o_bias, p + "self_attn.o_proj.bias", {D});
    down_ = w.take_linear(p + "mlp.down_proj.weight", {D, I});
    down_b_ = w.take_if(c.mlp_bias, p + "mlp.down_proj.bias", {D});
    if (c.qk_norm) {
      q_norm_ = norm(p + "self_attn.q_norm", d);
      k_norm_ = norm(p + "self_attn.k_norm", d);
    }
  }

  // ---- AttentionLayerView ----
  int64_t layer_index() const override { return index_; }
  int64_t num_heads() const override { return c_.num_heads; }
  int64_t num_kv_heads() const override { return c_.num_kv_heads; }
  int64_t head_dim() const override { return c_.head_dim; }
  at::Tensor query_states(const at::Tensor& h) const override {
    return q_norm_(heads(wq_(h, bq_), c_.num_heads));
  }
  at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions) const override {
    if (!inv_freq_.defined()) return x;
    return pikv::apply_rope(x, positions, inv_freq_, rope_scaling_);
  }
  at::Tensor unapply_rope(const at::Tensor& x, const at::Tensor& positions) const override {
    if (!inv_freq_.defined()) return x;
    return pikv::unapply_rope(x, positions, inv_freq_, rope_scaling_);
  }
  at::Tensor inv_freq() const override { return inv_freq_; }
  at::Tensor output_weight() const override { return wo_.matrix(); }

  // ---- used by the model ----
  at::Tensor key_states(const at::Tensor& h) const override { return k_norm_(heads(wk_(h, bk_), c_.num_kv_heads)); }
  at::Tensor value_states(const at::Tensor& h) const { return heads(wv_(h, bv_), c_.num_kv_heads); }
  at::Tensor output(const at::Tensor& attn) const {  // [B, H, T, d] -> [B, T, Dm]
    return attn_out_norm_(wo_(attn.transpose(1, 2).reshape({attn.size(0), attn.size(2), -1}), bo_));
  }
  at::Tensor mlp(const at::Tensor& x) const {  // the MLP block with its norms: [B, T, Dm] -> [B, T, Dm]
    const at::Tensor h = mlp_norm_(x);
    at::Tensor inner = gate_.defined()
                           ? detail::activate(act_, gate_(h, gate_b_)) * up_(h, up_b_)
                           : detail::activate(act_, up_(h, up_b_));
    return mlp_out_norm_(down_(inner, down_b_));
  }
  // RoPE for this forward (dynamic variants depend on the sequence length); kept undefined for models
  // without rotary embeddings.
  void set_rope(const at::Tensor& inv_freq, double scaling) {
    inv_freq_ = inv_freq;
    rope_scaling_ = scaling;
  }

  detail::Norm attn_norm_;
  const AttentionParams& params() const { return params_; }
  bool pressable() const { return pressable_; }
  // Bytes of the layer's weights as held, and how many of its matrices are quantized.
  std::pair<int64_t, int64_t> weight_bytes() const {
    int64_t bytes = 0, quantized = 0;
    for (const detail::LinearWeight* lw : {&wq_, &wk_, &wv_, &wo_, &gate_, &up_, &down_}) {
      if (!lw->defined()) continue;
      bytes += lw->bytes();
      quantized += lw->quantized.defined() ? 1 : 0;
    }
    for (const at::Tensor* t : {&bq_, &bk_, &bv_, &bo_, &gate_b_, &up_b_, &down_b_})
      if (t->defined()) bytes += t->numel() * t->element_size();
    for (const detail::Norm* n : {&attn_norm_, &attn_out_norm_, &mlp_norm_, &mlp_out_norm_, &q_norm_, &k_norm_})
      if (n->weight.defined()) bytes += n->weight.numel() * n->weight.element_size();
    return {bytes, quantized};
  }

 private:
  at::Tensor heads(const at::Tensor& x, int64_t n) const {  // [B, T, n*d] -> [B, n, T, d]
    return x.view({x.size(0), x.size(1), n, c_.head_dim}).transpose(1, 2);
  }

  const ModelConfig& c_;
  int64_t index_;
  detail::Activation act_;
  AttentionParams params_;
  bool pressable_ = true;
  detail::LinearWeight wq_, wk_, wv_, wo_, gate_, up_, down_;  // gate_ undefined: a plain (GPT-2) MLP
  at::Tensor bq_, bk_, bv_, bo_, gate_b_, up_b_, down_b_;
  detail::Norm attn_out_norm_, mlp_norm_, mlp_out_norm_, q_norm_, k_norm_;  // undefined weight: none
  at::Tensor inv_freq_;
  double rope_scaling_ = 1.0;
};

// The rotary frequencies of the last forward on the compute device: decode steps reuse them instead of
// copying the same host tensor to the GPU every token (a host synchronisation each time). Threads may
// run forwards on one model at once, hence the lock.
class DeviceCopy {
 public:
  at::Tensor get(const at::Tensor& host, const at::Device& device) {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool same = host_.defined() && copy_.device() == device &&
                      (host.is_same(host_) || (host.sizes() == host_.sizes() && at::equal(host, host_)));
    if (!same) {
      host_ = host;
      copy_ = host.to(device);
    }
    return copy_;
  }

 private:
  std::mutex mutex_;
  at::Tensor host_, copy_;
};

struct DecoderModel::Impl {
  detail::LinearWeight embed, lm_head;  // embed [V, Dm]: a lookup table, its rows dequantised on lookup
  at::Tensor position_embed;           // learned positions (GPT-2), else undefined
  detail::Norm final_norm;
  std::unique_ptr<RotaryEmbedding> rope, rope_local;
  DeviceCopy rope_full_on, rope_local_on;
  at::Tensor embed_scale;  // scalar multiplier of the embeddings (Gemma 3), or undefined
};

PIKV_INLINE LoadOptions& LoadOptions::device(const std::string& name) {
  try {
    device_ = at::Device(name);
  } catch (const std::exception&) {
    // LibTorch's own message carries a backtrace and not the option's name.
    PIKV_FAIL("LoadOptions::device: '{}' is not a device name (cpu, cuda, cuda:N)", name);
  }
  return *this;
}

PIKV_INLINE DecoderModel::DecoderModel(ModelConfig config, WeightMap weights, const LoadOptions& options,
                                       const std::string& source)
    : DecoderModel(std::move(config), std::move(weights), QuantizedWeightMap(), options, source) {}

PIKV_INLINE DecoderModel::DecoderModel(ModelConfig config, WeightMap weights, QuantizedWeightMap quantized,
                                       const LoadOptions& options, const std::string& source)
    : config_(std::move(config)), impl_(std::make_unique<Impl>()) {
  config_.validate(source);
  const at::ScalarType dtype = options.dtype().value_or(at::kFloat);
  PIKV_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf || dtype == at::kDouble,
             "DecoderModel: dtype must be float32, bfloat16, float16 or float64, got {}", dtype_name(dtype));
  options_ = at::TensorOptions().dtype(dtype).device(options.device().value_or(at::kCPU));
  detail::WeightReader w(weights, quantized, options_, source);
  const ModelConfig& c = config_;
  const int64_t V = c.vocab_size, D = c.hidden_size;
  std::string layer_prefix = "model.layers.";
  if (c.arch == Architecture::gpt2) {
    // GPT2LMHeadModel checkpoints prefix everything with "transformer."; GPT2Model ones do not.
    const std::string p = w.has("transformer.wte.weight") ? "transformer." : "";
    layer_prefix = p + "h.";
    impl_->embed = w.take_linear(p + "wte.weight", {V, D});
    impl_->position_embed = w.take(p + "wpe.weight", {c.max_position_embeddings, D});
    impl_->final_norm =
        detail::Norm{w.take(p + "ln_f.weight", {D}), w.take(p + "ln_f.bias", {D}), detail::NormKind::layer, c.norm_eps};
  } else {
    impl_->embed = w.take_linear("model.embed_tokens.weight", {V, D});
    impl_->final_norm = detail::Norm{w.take("model.norm.weight", {D}), at::Tensor(),
                                     c.arch == Architecture::gemma3 ? detail::NormKind::rms_gemma : detail::NormKind::rms,
                                     c.norm_eps};
    impl_->rope = std::make_unique<RotaryEmbedding>(c.rope, c.head_dim, c.max_position_embeddings);
    if (c.arch == Architecture::gemma3) {
      impl_->rope_local = std::make_unique<RotaryEmbedding>(c.rope_local, c.head_dim, c.max_position_embeddings);
      impl_->embed_scale = at::scalar_tensor(std::sqrt(static_cast<double>(c.hidden_size)), at::kFloat).to(options_);
    }
  }
  for (int64_t l = 0; l < c.num_layers; ++l) layers_.push_back(std::make_unique<Layer>(c, l, w, layer_prefix));
  // The output projection streams the whole vocabulary matrix per token: GEMV layout (or blocks). A
  // tied embedding shares it; the embedding is held the same way (the token lookup gathers strided
  // rows, which costs nothing measurable).
  impl_->lm_head = c.tie_word_embeddings ? impl_->embed : w.take_linear("lm_head.weight", {V, D});
  w.finish();
  if (options.kv_dtype()) {
    set_kv_dtype(*options.kv_dtype() == dtype ? std::nullopt : options.kv_dtype());
  } else if (quantized_matrices() > 0) {
    set_kv_dtype(at::kHalf);
  }
}

PIKV_INLINE int64_t DecoderModel::weight_bytes() const {
  int64_t bytes = impl_->embed.bytes() + (config_.tie_word_embeddings ? 0 : impl_->lm_head.bytes());
  if (impl_->position_embed.defined()) bytes += impl_->position_embed.numel() * impl_->position_embed.element_size();
  if (impl_->final_norm.weight.defined()) bytes += impl_->final_norm.weight.numel() * impl_->final_norm.weight.element_size();
  for (const auto& layer : layers_) bytes += layer->weight_bytes().first;
  return bytes;
}

PIKV_INLINE int64_t DecoderModel::quantized_matrices() const {
  int64_t n = (impl_->embed.quantized.defined() ? 1 : 0) +
              (!config_.tie_word_embeddings && impl_->lm_head.quantized.defined() ? 1 : 0);
  for (const auto& layer : layers_) n += layer->weight_bytes().second;
  return n;
}

PIKV_INLINE DecoderModel::~DecoderModel() = default;

PIKV_INLINE ModelShape DecoderModel::shape() const {
  const ModelConfig& c = config_;
  return {c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size, c.max_position_embeddings};
}

PIKV_INLINE const AttentionLayerView& DecoderModel::layer(int64_t index) const {
  PIKV_CHECK(index >= 0 && index < num_layers(), "layer index must be in [0, {}), got {}", num_layers(), index);
  return *layers_[static_cast<size_t>(index)];
}

PIKV_INLINE at::Tensor DecoderModel::forward(const at::Tensor& input_ids, KVCache& cache, const ForwardOptions& fo) {
  const ModelConfig& c = config_;
  check_rank(input_ids, 2, "input_ids", "[B, T]");
  PIKV_CHECK(input_ids.scalar_type() == at::kLong, "input_ids must be int64, got {}", dtype_name(input_ids.scalar_type()));
  PIKV_CHECK(input_ids.size(1) >= 1, "input_ids must hold at least one token, got {}", describe_tensor(input_ids));
  PIKV_CHECK(cache.num_layers() == num_layers(), "the KV cache has {} layers but the model has {}", cache.num_layers(),
             num_layers());
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const at::Device device = options_.device();
  // Token ids on the host are range-checked for free; ids already on a device only with debug checks.
  if (input_ids.device().is_cpu() || detail::debug_checks()) {
    const auto [lo, hi] = at::aminmax(input_ids);
    PIKV_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < c.vocab_size,
               "input_ids must be token ids in [0, {}), got values in [{}, {}]", c.vocab_size, lo.item<int64_t>(),
               hi.item<int64_t>());
  }
  at::Tensor ids = input_ids.to(device);
  const bool prefill = cache.empty(0);
  const int64_t offset = cache.logical_length(0);
  if (!prefill) {
    PIKV_CHECK(cache.batch_size(0) == B, "input_ids has batch {} but the cache holds batch {}", B, cache.batch_size(0));
  }

  auto lopts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor positions;
  int64_t seq_len = offset + T;
  if (fo.positions().defined()) {
    PIKV_CHECK(fo.positions().dim() == 2 && fo.positions().size(0) == B && fo.positions().size(1) == T,
               "positions must be [B, T] = [{}, {}], got {}", B, T, describe_tensor(fo.positions()));
    // The largest position sizes length-dependent RoPE: read on the host before the tensor moves.
    seq_len = fo.positions().max().item<int64_t>() + 1;
    positions = fo.positions().to(lopts);
  } else {
    positions = at::arange(offset, offset + T, lopts).expand({B, T});
  }
  PIKV_CHECK(seq_len <= c.max_position_embeddings || !impl_->position_embed.defined(),
             "GPT-2 has {} learned positions; this forward needs {}", c.max_position_embeddings, seq_len);
  at::Tensor padding;
  if (fo.attention_mask().defined()) {
    const at::Tensor& m = fo.attention_mask();
    PIKV_CHECK(m.dim() == 2 && m.size(0) == B && m.size(1) == offset + T,
               "attention_mask must be [B, cached + new] = [{}, {}], got {}", B, offset + T, describe_tensor(m));
    padding = m.to(device).to(at::kBool);
  }

  if (impl_->rope) {
    const at::Tensor full = impl_->rope_full_on.get(impl_->rope->inv_freq(seq_len), device);
    const at::Tensor local =
        impl_->rope_local ? impl_->rope_local_on.get(impl_->rope_local->inv_freq(seq_len), device) : at::Tensor();
    for (int64_t l = 0; l < num_layers(); ++l) {
      const bool use_local = impl_->rope_local && c.is_sliding(l);
      layers_[static_cast<size_t>(l)]->set_rope(use_local ? local : full,
                                                use_local ? impl_->rope_local->attention_scaling()
                                                          : impl_->rope->attention_scaling());
    }
  }

  at::Tensor x = impl_->embed.quantized.defined() ? impl_->embed.quantized.rows_at(ids)
                                                 : at::embedding(impl_->embed.dense, ids);
  if (impl_->embed_scale.defined()) x = x * impl_->embed_scale;
  if (impl_->position_embed.defined()) x = x + at::embedding(impl_->position_embed, positions);

  const at::Tensor query_index = at::arange(offset, offset + T, lopts);
  {
    ForwardScope scope(*this, cache, fo.prefill_continues());  // the press's lifecycle, exception-safe
    for (int64_t l = 0; l < num_layers(); ++l) {
      const Layer& layer = *layers_[static_cast<size_t>(l)];
      const at::Tensor h = layer.attn_norm_(x);
      LayerAttention call = LayerAttention::rotary(layer, h, layer.query_states(h), layer.key_states(h),
                                                   layer.value_states(h), positions, query_index);
      call.key_padding = padding;
      call.params = layer.params();
      call.params.need_weights = fo.eager_attention();
      call.pressable = layer.pressable();
      x = x + layer.output(attention(call, cache).output);
      if (B * T <= detail::kMlpChunkTokens) {
        x = x + layer.mlp(x);
      } else {
        // A long prefill: the MLP is per token, so run it on slices of the sequence. Its [B, T, I]
        // intermediates (3 x 7.5 GB for 8 x 32k tokens of a Llama-8B shape) never exist at once.
        const int64_t step = std::max<int64_t>(1, detail::kMlpChunkTokens / B);
        for (int64_t s = 0; s < T; s += step) {
          at::Tensor slice = x.narrow(1, s, std::min(step, T - s));
          slice.add_(layer.mlp(slice));
        }
      }
      if (fo.on_layer()) fo.on_layer()(l + 1, num_layers());
    }
  }
  x = impl_->final_norm(x);
  if (fo.return_hidden()) return x;
  at::Tensor logits = impl_->lm_head(x);
  if (c.final_logit_softcapping) logits = at::tanh(logits / *c.final_logit_softcapping) * *c.final_logit_softcapping;
  return logits;
}

PIKV_INLINE std::unique_ptr<DecoderModel> DecoderModel::load(const std::string& path, const LoadOptions& options) {
  Checkpoint ckpt;
  if (is_directory(path)) {
    ckpt = read_hf_checkpoint(path);
  } else {
    PIKV_CHECK(is_regular_file(path), "model path '{}' does not exist", path);
    CheckpointOptions read;
    read.keep_quantized = !options.dequantize() && options.dtype().value_or(at::kFloat) == at::kFloat &&
                          options.device().value_or(at::kCPU).is_cpu();
    ckpt = read_gguf_checkpoint(path, read);
  }
  return std::make_unique<DecoderModel>(std::move(ckpt.config), std::move(ckpt.weights), std::move(ckpt.quantized),
                                        options, path);
}

}  // namespace pikv
