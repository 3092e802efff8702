// A transformer written by hand as a torch::nn::Module, pressed by PiKVPress. Its attention calls the
// library's central attention function (HookableModel::attention, what the pikv::cached_attention
// operator runs too): that is all the glue a model needs for PressGuard to compress its KV cache.
// Usage: pikv_example_handwritten
#include <pikv/pikv.h>

#include <torch/torch.h>

#include <cmath>
#include <iostream>

// One pre-norm attention block with RoPE and grouped-query attention (no MLP, to stay short).
struct BlockImpl : torch::nn::Module, pikv::AttentionLayerView {
  BlockImpl(int64_t index, int64_t dim, int64_t heads, int64_t kv_heads)
      : index(index), heads(heads), kv_heads(kv_heads), d(dim / heads) {
    q = register_module("q", torch::nn::Linear(torch::nn::LinearOptions(dim, heads * d).bias(false)));
    k = register_module("k", torch::nn::Linear(torch::nn::LinearOptions(dim, kv_heads * d).bias(false)));
    v = register_module("v", torch::nn::Linear(torch::nn::LinearOptions(dim, kv_heads * d).bias(false)));
    o = register_module("o", torch::nn::Linear(torch::nn::LinearOptions(heads * d, dim).bias(false)));
    norm = register_parameter("norm", torch::ones({dim}));
    freqs = 1.0 / torch::pow(10000.0, torch::arange(0, d, 2, torch::kFloat) / static_cast<double>(d));
  }
  // What presses read about the layer (pikv::AttentionLayerView).
  int64_t layer_index() const override { return index; }
  int64_t num_heads() const override { return heads; }
  int64_t num_kv_heads() const override { return kv_heads; }
  int64_t head_dim() const override { return d; }
  at::Tensor query_states(const at::Tensor& h) const override { return split(torch::linear(h, q->weight), heads); }
  at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& pos) const override {
    return pikv::apply_rope(x, pos, freqs);
  }
  at::Tensor inv_freq() const override { return freqs; }
  at::Tensor output_weight() const override { return o->weight; }
  at::Tensor split(const at::Tensor& x, int64_t n) const {  // [B, T, n*d] -> [B, n, T, d]
    return x.view({x.size(0), x.size(1), n, d}).transpose(1, 2);
  }

  int64_t index, heads, kv_heads, d;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  at::Tensor norm, freqs;  // RMSNorm weight [dim]; RoPE inverse frequencies [d / 2]
};
TORCH_MODULE(Block);

// The model: a stack of blocks that is also a pikv::CausalLM (one press slot, forward over a KVCache).
struct TinyTransformer : torch::nn::Module, pikv::CausalLM {
  TinyTransformer(int64_t vocab, int64_t dim, int64_t layers) : vocab(vocab) {
    embed = register_module("embed", torch::nn::Embedding(vocab, dim));
    for (int64_t l = 0; l < layers; ++l) blocks.push_back(register_module("block" + std::to_string(l), Block(l, dim, 4, 2)));
  }
  int64_t num_layers() const override { return static_cast<int64_t>(blocks.size()); }
  pikv::ModelShape shape() const override {
    pikv::ModelShape s;
    s.num_layers = num_layers();
    s.num_heads = blocks[0]->heads;
    s.num_kv_heads = blocks[0]->kv_heads;
    s.head_dim = blocks[0]->d;
    s.vocab_size = vocab;
    s.max_positions = 0;  // no position limit (RoPE)
    return s;
  }
  at::TensorOptions options() const override { return embed->weight.options(); }

  at::Tensor forward(const at::Tensor& ids, pikv::KVCache& cache, const pikv::ForwardOptions& = {}) override {
    const int64_t offset = cache.logical_length(0), T = ids.size(1);
    const at::Tensor positions = torch::arange(offset, offset + T, torch::kLong);
    pikv::ForwardScope scope(*this, cache);  // prefill/decode lifecycle for the press
    at::Tensor x = embed->forward(ids);
    for (auto& b : blocks) {
      const at::Tensor h = torch::rms_norm(x, {x.size(-1)}, b->norm, 1e-6);
      auto call = pikv::LayerAttention::rotary(*b, h, b->query_states(h), b->split(b->k->forward(h), b->kv_heads),
                                               b->split(b->v->forward(h), b->kv_heads), positions, positions);
      const at::Tensor out = attention(call, cache).output;  // [B, H, T, d]; the scope knows the rest
      x = x + b->o->forward(out.transpose(1, 2).reshape({x.size(0), T, -1}));
    }
    return torch::matmul(x, embed->weight.t());  // tied output projection: logits [B, T, V]
  }

  int64_t vocab;
  torch::nn::Embedding embed{nullptr};
  std::vector<Block> blocks;
};

int main() {
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  TinyTransformer model(/*vocab=*/256, /*dim=*/64, /*layers=*/2);
  const at::Tensor context = torch::randint(256, {1, 96}, torch::kLong);

  pikv::SnapKVPress press(pikv::SnapKVOptions().compression_ratio(0.5).window_size(16));
  pikv::KVCache cache = model.make_cache();
  {
    pikv::PressGuard guard(model, press);  // the press acts on this model's prefill only
    model.forward(context, cache);
  }
  std::cout << model.compression_stats() << "\n";
  const at::Tensor next = model.forward(torch::tensor({{7L}}), cache);  // decodes on the compressed cache
  std::cout << "kept " << cache.physical_length(0) << " of " << cache.logical_length(0) << " tokens in layer 0; "
            << "next-token logits " << next.sizes() << "\n";
  return cache.physical_length(0) == 48 + 1 ? 0 : 1;
}
