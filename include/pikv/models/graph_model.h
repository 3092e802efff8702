#pragma once
// Models a user brings: a transformers model exported with python/pikv_export, run from C++ under the
// same PressGuard, Pipeline and tools as our own decoder.
//   ExportedModel  an AOTInductor package (.pt2): torch.export + AOTInductor, the recommended C++
//                  deployment path of PyTorch
//   ScriptedModel  a TorchScript module (.pt): torch.jit.trace, still common in deployed code
// Both graphs call the pikv::cached_attention operator (pikv/ops/cached_attention.h) in every attention
// layer over fixed-capacity cache buffers. The host owns those buffers: make_cache() allocates a
// fixed-capacity KVCache and forward() binds its tensors to the graph (no copy), so compression, decode
// appends and statistics are visible to the caller, and a new request is a cache.clear().
//
// Loading a model file runs code it contains (AOTInductor's compiled library, TorchScript's
// interpreter): load only files you trust, as you would a shared library.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <pikv/core/causal_lm.h>
#include <pikv/models/decoder.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pikv {

// What pikv_export records with the graph (AOTInductor metadata, or the TorchScript extra file pikv.json).
struct GraphModelInfo {
  ModelShape shape;
  int64_t batch = 1;     // rows the graph was exported for
  int64_t capacity = 0;  // tokens per (row, KV head) the cache holds
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;  // cpu or cuda (no index: the graph runs on the current CUDA device)
  std::string model_type;                               // transformers' model_type ("llama", ...)
  std::vector<std::array<std::string, 3>> cache_names;  // per layer: the graph's key, value, slots buffers

  // Parses pikv_export's metadata (key -> value); throws pikv::Error naming `path` and what is missing or
  // wrong (a graph not written by pikv_export has no "pikv.format").
  static GraphModelInfo parse(const std::map<std::string, std::string>& metadata, const std::string& path);
};

// The shared part of ExportedModel and ScriptedModel.
class GraphModel : public CausalLM {
 public:
  int64_t num_layers() const override { return info_.shape.num_layers; }
  ModelShape shape() const override { return info_.shape; }
  at::TensorOptions options() const override;
  // A fixed-capacity cache with the graph's geometry (batch must be the exported batch).
  KVCache make_cache(int64_t batch = 1) const override;
  // input_ids int64 [B, T] -> logits [B, T, V]. `cache` must be one of make_cache()'s; its buffers are
  // bound to the graph. Positions continue the cache. A forward that would take the cache past its
  // capacity is refused before the graph runs; an error raised inside the graph by the pikv operator
  // (a press, the cache) is reported with the operator's own message. attention_mask, explicit positions, return_hidden
  // and eager_attention are not supported (the operator materialises attention weights when the
  // installed press needs them).
  at::Tensor forward(const at::Tensor& input_ids, KVCache& cache, const ForwardOptions& options = {}) override;
  bool supports_hidden_output() const override { return false; }

  const GraphModelInfo& info() const { return info_; }
  const std::string& path() const { return path_; }

 protected:
  GraphModel(GraphModelInfo info, std::string path);
  // Makes the graph's cache buffers the tensors of `cache` (no copy).
  virtual void bind(KVCache& cache) = 0;
  // Runs the graph: input_ids, positions int64 [B, T] on the model's device -> logits [B, T, V].
  virtual at::Tensor run(const at::Tensor& input_ids, const at::Tensor& positions) = 0;

 private:
  GraphModelInfo info_;
  std::string path_;
  // The graph has one set of cache buffers: binding a cache and running the graph is one critical
  // section, so threads sharing the model take turns (load one model per thread to run in parallel).
  std::mutex run_mutex_;
  const void* bound_ = nullptr;  // layer 0's key buffer of the cache bound last
};

class ExportedModel : public GraphModel {
 public:
  // An AOTInductor package written by pikv_export. Throws pikv::Error for a missing file, a package
  // without pikv_export's metadata, one compiled for a device this process does not have, and options
  // that ask for another dtype, device or KV dtype than the graph's (check_graph_options).
  [[nodiscard]] static std::unique_ptr<ExportedModel> load(const std::string& path, const LoadOptions& options = {});
  ~ExportedModel() override;

 protected:
  void bind(KVCache& cache) override;
  at::Tensor run(const at::Tensor& input_ids, const at::Tensor& positions) override;

 private:
  struct Impl;
  ExportedModel(GraphModelInfo info, std::string path, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class ScriptedModel : public GraphModel {
 public:
  // A TorchScript file written by pikv_export. Throws pikv::Error for a missing or foreign file, and for
  // options the graph cannot honour (check_graph_options).
  [[nodiscard]] static std::unique_ptr<ScriptedModel> load(const std::string& path, const LoadOptions& options = {});
  ~ScriptedModel() override;

 protected:
  void bind(KVCache& cache) override;
  at::Tensor run(const at::Tensor& input_ids, const at::Tensor& positions) override;

 private:
  struct Impl;
  ScriptedModel(GraphModelInfo info, std::string path, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Throws pikv::Error (naming `path`, the requested value and the graph's) when `options` set a dtype, a
// device or a KV dtype other than those the graph was exported for. A graph cannot be moved or converted
// after export: an AOTInductor package is compiled code for one device and dtype, and a traced TorchScript
// module keeps the device and dtype of the export as constants (tensors it creates, casts), so
// .to(device) would move its weights but not those. A CUDA graph runs on the current CUDA device: a
// request naming another index is refused too. Unset options (LoadOptions()) take the graph's own.
// dequantize (GGUF only) does not apply and is ignored.
void check_graph_options(const GraphModelInfo& info, const LoadOptions& options, const std::string& path);

// True for the files load_causal_lm loads as exported graphs: *.pt2 and *.pt.
[[nodiscard]] bool is_graph_file(const std::string& path);

// A model file by its kind: .pt2 -> ExportedModel, .pt -> ScriptedModel, anything else (a Hugging Face
// folder, a .gguf file) -> DecoderModel::load, each with `options` (exported graphs keep the dtype and
// device they were exported with: leave those options unset, or set them to the graph's).
[[nodiscard]] std::unique_ptr<CausalLM> load_causal_lm(const std::string& path, const LoadOptions& options);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/graph_model-inl.h>
#endif
