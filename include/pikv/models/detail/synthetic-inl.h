#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/models/rope.h>
#include <pikv/models/synthetic.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace pikv {

class SyntheticAttentionModel::Layer : public AttentionLayerView {
 public:
  Layer(const SyntheticModelOptions& c, int64_t index, at::TensorOptions options) : c_(c), index_(index) {
    at::Generator gen = at::detail::createCPUGenerator(c.seed() * 1000003ULL + static_cast<uint64_t>(index));
    const double s = 1.0 / std::sqrt(static_cast<double>(c.hidden_size()));
    auto init = [&](int64_t rows, int64_t cols, double scale) {
      return (at::randn({rows, cols}, gen, at::kFloat) * scale).to(options);
    };
    // Query/key weights 1.5x the usual scale make attention clearly non-uniform without being one-hot.
    wq_ = init(c.num_heads() * c.head_dim(), c.hidden_size(), 1.5 * s);
    wk_ = init(c.num_kv_heads() * c.head_dim(), c.hidden_size(), 1.5 * s);
    wv_ = init(c.num_kv_heads() * c.head_dim(), c.hidden_size(), s);
    wo_ = init(c.hidden_size(), c.num_heads() * c.head_dim(), 1.0 / std::sqrt(static_cast<double>(c.num_heads() * c.head_dim())));
    norm_ = (1.0 + 0.1 * at::randn({c.hidden_size()}, gen, at::kFloat)).to(options);
    inv_freq_ = rope_inv_freq(c.head_dim(), c.rope_theta()).to(options.device());
  }

  int64_t layer_index() const override { return index_; }
  int64_t num_heads() const override { return c_.num_heads(); }
  int64_t num_kv_heads() const override { return c_.num_kv_heads(); }
  int64_t head_dim() const override { return c_.head_dim(); }

  at::Tensor query_states(const at::Tensor& h) const override { return split_heads(at::linear(h, wq_), c_.num_heads()); }
  at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions) const override {
    return pikv::apply_rope(x, positions, inv_freq_);
  }
  at::Tensor inv_freq() const override { return inv_freq_; }
  at::Tensor output_weight() const override { return wo_; }

  at::Tensor norm(const at::Tensor& x) const {
    at::Tensor xf = x.to(at::kFloat);
    return (xf * at::rsqrt(xf.pow(2).mean(-1, true) + 1e-6)).to(x.scalar_type()) * norm_;
  }
  at::Tensor keys(const at::Tensor& h) const { return split_heads(at::linear(h, wk_), c_.num_kv_heads()); }
  at::Tensor values(const at::Tensor& h) const { return split_heads(at::linear(h, wv_), c_.num_kv_heads()); }
  at::Tensor output(const at::Tensor& attn) const {  // [B, H, q, d] -> [B, q, Dm]
    return at::linear(attn.transpose(1, 2).reshape({attn.size(0), attn.size(2), -1}), wo_);
  }

 private:
  at::Tensor split_heads(const at::Tensor& x, int64_t heads) const {  // [B, q, heads*d] -> [B, heads, q, d]
    return x.view({x.size(0), x.size(1), heads, c_.head_dim()}).transpose(1, 2);
  }
  SyntheticModelOptions c_;
  int64_t index_;
  at::Tensor wq_, wk_, wv_, wo_, norm_, inv_freq_;
};

PIKV_INLINE SyntheticAttentionModel::SyntheticAttentionModel(const SyntheticModelOptions& config, at::TensorOptions options)
    : config_(config), options_(options) {
  PIKV_CHECK(config.num_layers() >= 1, "SyntheticModelOptions.num_layers must be >= 1, got {}", config.num_layers());
  PIKV_CHECK(config.hidden_size() >= 1, "SyntheticModelOptions.hidden_size must be >= 1, got {}", config.hidden_size());
  PIKV_CHECK(config.num_kv_heads() >= 1 && config.num_heads() % config.num_kv_heads() == 0,
             "SyntheticModelOptions: num_heads={} must be a positive multiple of num_kv_heads={}", config.num_heads(),
             config.num_kv_heads());
  PIKV_CHECK(config.head_dim() >= 2 && config.head_dim() % 2 == 0,
             "SyntheticModelOptions.head_dim must be even and >= 2, got {}", config.head_dim());
  PIKV_CHECK(at::isFloatingType(options.dtype().toScalarType()),
             "SyntheticAttentionModel needs a floating dtype, got {}", dtype_name(options.dtype().toScalarType()));
  for (int64_t l = 0; l < config.num_layers(); ++l) layers_.push_back(std::make_unique<Layer>(config, l, options));
}

PIKV_INLINE SyntheticAttentionModel::~SyntheticAttentionModel() = default;

PIKV_INLINE const AttentionLayerView& SyntheticAttentionModel::layer(int64_t index) const {
  PIKV_CHECK(index >= 0 && index < num_layers(), "layer index must be in [0, {}), got {}", num_layers(), index);
  return *layers_[static_cast<size_t>(index)];
}

PIKV_INLINE at::Tensor SyntheticAttentionModel::embed(int64_t batch, int64_t tokens, uint64_t seed) const {
  PIKV_CHECK(batch >= 1 && tokens >= 1, "embed needs batch >= 1 and tokens >= 1, got {} and {}", batch, tokens);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn({batch, tokens, config_.hidden_size()}, gen, at::kFloat).to(options_);
}

PIKV_INLINE at::Tensor SyntheticAttentionModel::forward(const at::Tensor& x, KVCache& cache, bool prefill_continues) {
  check_rank(x, 3, "SyntheticAttentionModel input", "[B, q, Dm]");
  PIKV_CHECK(x.size(2) == config_.hidden_size() && x.size(1) >= 1,
             "SyntheticAttentionModel input must be [B, q>=1, Dm={}], got {}", config_.hidden_size(), describe_tensor(x));
  PIKV_CHECK(cache.num_layers() == num_layers(), "the KV cache has {} layers but the model has {}", cache.num_layers(),
             num_layers());
  const int64_t offset = cache.logical_length(0);
  at::Tensor positions = at::arange(offset, offset + x.size(1), at::TensorOptions().dtype(at::kLong).device(x.device()));
  ForwardScope scope(*this, cache, prefill_continues);  // the press's lifecycle, exception-safe
  at::Tensor h = x.to(options_);
  for (int64_t l = 0; l < num_layers(); ++l) {
    const Layer& layer = *layers_[static_cast<size_t>(l)];
    // The one attention function: every layer attends there, then hands its state to the press.
    const at::Tensor normed = layer.norm(h);
    LayerAttention call = LayerAttention::rotary(layer, normed, layer.query_states(normed), layer.keys(normed),
                                                 layer.values(normed), positions, positions);
    call.params.need_weights = config_.output_attentions();  // scale 0: logits / sqrt(d)
    h = h + layer.output(attention(call, cache).output);
  }
  return h;
}

}  // namespace pikv
