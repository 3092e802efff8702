#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/models/graph_model.h>
#include <pikv/models/decoder.h>
#include <pikv/models/loader.h>
#include <pikv/ops/cached_attention.h>

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <unordered_map>

namespace pikv {
namespace detail {

inline std::string graph_meta(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  PIKV_CHECK(it != m.end(), "'{}': pikv_export's metadata lacks '{}' (export the model again with python -m pikv_export)",
             path, key);
  return it->second;
}

inline int64_t graph_meta_int(const std::map<std::string, std::string>& m, const std::string& key,
                              const std::string& path, int64_t lo, int64_t hi) {
  const std::string text = graph_meta(m, key, path);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  PIKV_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0 && v >= lo && v <= hi,
             "'{}': metadata '{}' must be an integer in [{}, {}], got '{}'", path, key, lo, hi, text);
  return v;
}

inline std::vector<std::string> split_graph_list(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

// A graph runtime's error message as ours: without LibTorch's backtrace, and for TorchScript's
// "The following operation failed in the TorchScript interpreter" only the original error's first line
// (the interpreter's traceback of the exported code above it means nothing to the caller).
inline std::string graph_error_text(std::string what) {
  const auto bt = what.find("\nException raised from");
  if (bt != std::string::npos) what.resize(bt);
  if (what.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    // The traceback ends with the original error as "<Kind>Error: message" at the start of a line.
    const auto colon = what.rfind("Error: ");
    const auto line = colon == std::string::npos ? std::string::npos : what.rfind('\n', colon);
    if (line != std::string::npos && what.find(' ', line + 1) > colon) {
      std::string original = what.substr(colon + 7);
      original.resize(std::min(original.size(), original.find('\n')));
      if (!original.empty()) return original;
    }
  }
  return what;
}
inline std::string graph_error_text(const std::exception& e) { return graph_error_text(std::string(e.what())); }

// The device a graph of `device`'s type runs on: the current CUDA device for a CUDA graph (tensors made
// with device "cuda" land there; the cache's buffers report the index).
inline at::Device graph_run_device(const at::Device& device) {
  if (!device.is_cuda()) return device;
  return at::Device(at::kCUDA, c10::impl::getDeviceGuardImpl(at::kCUDA)->getDevice().index());
}

inline void check_graph_device(const at::Device& device, const std::string& path) {
  if (device.is_cuda()) {
    PIKV_CHECK(torch::cuda::is_available(),
               "'{}' was compiled for {}, but this process sees no CUDA device (export it again with --device cpu)",
               path, device.str());
  }
}

}  // namespace detail

PIKV_INLINE GraphModelInfo GraphModelInfo::parse(const std::map<std::string, std::string>& m, const std::string& path) {
  auto format = m.find("pikv.format");
  PIKV_CHECK(format != m.end() && format->second == "pikv-exported-model",
             "'{}' was not exported with python -m pikv_export: it carries no pikv metadata, so it does not call the "
             "pikv::cached_attention operator and no press could run in it",
             path);
  const int64_t version = detail::graph_meta_int(m, "pikv.version", path, 1, 1000);
  PIKV_CHECK(version == 1, "'{}' was written by pikv_export format version {}, this build reads version 1", path, version);
  GraphModelInfo info;
  ModelShape& s = info.shape;
  s.num_layers = detail::graph_meta_int(m, "num_layers", path, 1, 10000);
  s.num_heads = detail::graph_meta_int(m, "num_heads", path, 1, 4096);
  s.num_kv_heads = detail::graph_meta_int(m, "num_kv_heads", path, 1, 4096);
  s.head_dim = detail::graph_meta_int(m, "head_dim", path, 1, 4096);
  s.vocab_size = detail::graph_meta_int(m, "vocab_size", path, 1, int64_t{1} << 24);
  info.batch = detail::graph_meta_int(m, "batch", path, 1, 4096);
  info.capacity = detail::graph_meta_int(m, "capacity", path, 1, int64_t{1} << 24);
  s.max_positions = info.capacity;
  PIKV_CHECK(s.num_heads % s.num_kv_heads == 0, "'{}': num_heads {} is not a multiple of num_kv_heads {}", path,
             s.num_heads, s.num_kv_heads);
  const std::string dtype = detail::graph_meta(m, "dtype", path);
  if (dtype == "float32") {
    info.dtype = at::kFloat;
  } else if (dtype == "bfloat16") {
    info.dtype = at::kBFloat16;
  } else if (dtype == "float16") {
    info.dtype = at::kHalf;
  } else {
    PIKV_FAIL("'{}': metadata 'dtype' must be float32, bfloat16 or float16, got '{}'", path, dtype);
  }
  const std::string device = detail::graph_meta(m, "device", path);
  // pikv_export writes the device type only: the graph runs on the process's current device of that type.
  PIKV_CHECK(device == "cpu" || device == "cuda", "'{}': metadata 'device' must be cpu or cuda, got '{}'", path,
             device);
  info.device = at::Device(device);
  info.model_type = m.count("model_type") ? m.at("model_type") : "";
  const auto layers = detail::split_graph_list(detail::graph_meta(m, "cache_names", path), ';');
  PIKV_CHECK(static_cast<int64_t>(layers.size()) == s.num_layers,
             "'{}': metadata 'cache_names' lists {} layers, the model has {}", path, layers.size(), s.num_layers);
  for (const auto& layer : layers) {
    const auto names = detail::split_graph_list(layer, ',');
    PIKV_CHECK(names.size() == 3 && !names[0].empty() && !names[1].empty() && !names[2].empty(),
               "'{}': metadata 'cache_names' entry '{}' must be KEYS,VALUES,SLOTS", path, layer);
    info.cache_names.push_back({names[0], names[1], names[2]});
  }
  return info;
}

PIKV_INLINE GraphModel::GraphModel(GraphModelInfo info, std::string path) : info_(std::move(info)), path_(std::move(path)) {}

PIKV_INLINE at::TensorOptions GraphModel::options() const {
  return at::TensorOptions().dtype(info_.dtype).device(info_.device);
}

PIKV_INLINE KVCache GraphModel::make_cache(int64_t batch) const {
  PIKV_CHECK(batch == info_.batch, "'{}' was exported for batch {}; a cache for batch {} cannot run on it", path_,
             info_.batch, batch);
  FixedCacheShape s;
  s.num_layers = info_.shape.num_layers;
  s.batch = info_.batch;
  s.kv_heads = info_.shape.num_kv_heads;
  s.capacity = info_.capacity;
  s.head_dim = info_.shape.head_dim;
  return KVCache::fixed_capacity(s, options());
}

PIKV_INLINE at::Tensor GraphModel::forward(const at::Tensor& input_ids, KVCache& cache, const ForwardOptions& fo) {
  PIKV_CHECK(!fo.attention_mask().defined() && !fo.positions().defined(),
             "'{}': exported models take neither an attention mask (left padding) nor explicit positions", path_);
  PIKV_CHECK(!fo.return_hidden() && !fo.eager_attention(),
             "'{}': exported models return logits only and materialise attention weights only for the press", path_);
  check_rank(input_ids, 2, "input_ids", "[B, T]");
  PIKV_CHECK(input_ids.scalar_type() == at::kLong && input_ids.size(1) >= 1,
             "input_ids must be int64 [B, T] with T >= 1, got {}", describe_tensor(input_ids));
  PIKV_CHECK(input_ids.size(0) == info_.batch, "'{}' was exported for batch {}, input_ids has batch {}", path_,
             info_.batch, input_ids.size(0));
  if (input_ids.device().is_cpu()) {
    const auto [lo, hi] = at::aminmax(input_ids);
    PIKV_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < info_.shape.vocab_size,
               "input_ids must be token ids in [0, {}), got values in [{}, {}]", info_.shape.vocab_size,
               lo.item<int64_t>(), hi.item<int64_t>());
  }
  PIKV_CHECK(cache.is_fixed_capacity() && cache.num_layers() == info_.shape.num_layers &&
                 cache.fixed_shape().batch == info_.batch && cache.fixed_shape().kv_heads == info_.shape.num_kv_heads &&
                 cache.fixed_shape().capacity == info_.capacity && cache.fixed_shape().head_dim == info_.shape.head_dim,
             "'{}' runs on a fixed-capacity cache of {} layers [B={}, Hkv={}, C={}, d={}]: make it with make_cache()",
             path_, info_.shape.num_layers, info_.batch, info_.shape.num_kv_heads, info_.capacity, info_.shape.head_dim);
  const at::Tensor& k0 = cache.fixed_buffers(0).keys;
  const at::Device run_on = detail::graph_run_device(info_.device);
  PIKV_CHECK(k0.scalar_type() == info_.dtype && k0.device() == run_on, "'{}' runs in {} on {}; the cache is {} on {}",
             path_, dtype_name(info_.dtype), run_on.str(), dtype_name(k0.scalar_type()), k0.device().str());
  const int64_t B = input_ids.size(0), T = input_ids.size(1), offset = cache.logical_length(0);
  // Checked here, before the graph runs: inside it the operator would fail only after earlier layers had
  // appended, behind the runtime's wrapper (AOTInductor prints the real message to stderr only). The same
  // condition as the operator's: each layer appends the forward's T tokens before any press of this
  // forward can make room.
  for (int64_t l = 0; l < info_.shape.num_layers; ++l) {
    const int64_t held = cache.physical_length(l);
    PIKV_CHECK(held + T <= info_.capacity,
               "'{}': {} new tokens after the {} a head of layer {} holds exceed the fixed capacity of {} tokens "
               "(make the cache, or export the model, with a larger capacity)",
               path_, T, held, l, info_.capacity);
  }
  const std::lock_guard<std::mutex> lock(run_mutex_);
  if (bound_ != k0.data_ptr()) {
    bind(cache);
    bound_ = k0.data_ptr();
  }
  const auto lopts = at::TensorOptions().dtype(at::kLong).device(run_on);
  at::Tensor positions = at::arange(offset, offset + T, lopts).expand({B, T}).contiguous();
  at::Tensor logits;
  {
    ForwardScope scope(*this, cache, fo.prefill_continues());
    (void)ops::take_operator_error();  // a message left by an earlier call on this thread is not this run's
    try {
      logits = run(input_ids.to(lopts.device()), positions);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      // The operator's own message when it is what failed (a press, the cache), else the runtime's.
      const std::string op = ops::take_operator_error();
      if (!op.empty()) PIKV_FAIL("'{}': {}", path_, detail::graph_error_text(op));
      PIKV_FAIL("'{}': the graph failed: {}", path_, detail::graph_error_text(e));
    }
  }
  if (fo.on_layer()) fo.on_layer()(info_.shape.num_layers, info_.shape.num_layers);
  return logits;
}

// ---- ExportedModel ----

struct ExportedModel::Impl {
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
};

PIKV_INLINE ExportedModel::ExportedModel(GraphModelInfo info, std::string path, std::unique_ptr<Impl> impl)
    : GraphModel(std::move(info), std::move(path)), impl_(std::move(impl)) {}

PIKV_INLINE ExportedModel::~ExportedModel() = default;

PIKV_INLINE std::unique_ptr<ExportedModel> ExportedModel::load(const std::string& path, const LoadOptions& options) {
  PIKV_CHECK(is_regular_file(path), "exported model '{}' does not exist or is not a regular file", path);
  std::map<std::string, std::string> meta;
  try {
    for (const auto& [k, v] : torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model")) {
      meta[k] = v;
    }
  } catch (const std::exception& e) {
    PIKV_FAIL("'{}' is not an AOTInductor package (.pt2): {}", path, detail::graph_error_text(e));
  }
  GraphModelInfo info = GraphModelInfo::parse(meta, path);
  detail::check_graph_device(info.device, path);
  check_graph_options(info, options, path);  // before the compiled library is loaded
  auto impl = std::make_unique<Impl>();
  try {
    impl->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model");
  } catch (const std::exception& e) {
    PIKV_FAIL("cannot load the AOTInductor package '{}': {}", path, detail::graph_error_text(e));
  }
  std::vector<std::string> fqns = impl->loader->get_constant_fqns();
  for (const auto& layer : info.cache_names) {
    for (const auto& name : layer) {
      PIKV_CHECK(std::find(fqns.begin(), fqns.end(), name) != fqns.end(),
                 "'{}': the graph has no cache buffer '{}' named in its metadata", path, name);
    }
  }
  return std::unique_ptr<ExportedModel>(new ExportedModel(std::move(info), path, std::move(impl)));
}

PIKV_INLINE void ExportedModel::bind(KVCache& cache) {
  std::unordered_map<std::string, at::Tensor> constants;
  for (int64_t l = 0; l < num_layers(); ++l) {
    const KVCache::FixedBuffers& b = cache.fixed_buffers(l);
    const auto& names = info().cache_names[static_cast<size_t>(l)];
    constants[names[0]] = b.keys;
    constants[names[1]] = b.values;
    constants[names[2]] = b.slots;
  }
  // user_managed: the graph uses these tensors themselves, so the host sees every in-place update.
  impl_->loader->load_constants(constants, /*use_inactive=*/false, /*check_full_update=*/false, /*user_managed=*/true);
}

PIKV_INLINE at::Tensor ExportedModel::run(const at::Tensor& input_ids, const at::Tensor& positions) {
  std::vector<at::Tensor> out = impl_->loader->run({input_ids, positions});
  PIKV_CHECK(!out.empty(), "'{}': the graph returned nothing", path());
  return out[0];
}

// ---- ScriptedModel ----

struct ScriptedModel::Impl {
  torch::jit::Module module;
};

PIKV_INLINE ScriptedModel::ScriptedModel(GraphModelInfo info, std::string path, std::unique_ptr<Impl> impl)
    : GraphModel(std::move(info), std::move(path)), impl_(std::move(impl)) {}

PIKV_INLINE ScriptedModel::~ScriptedModel() = default;

PIKV_INLINE std::unique_ptr<ScriptedModel> ScriptedModel::load(const std::string& path, const LoadOptions& options) {
  PIKV_CHECK(is_regular_file(path), "TorchScript model '{}' does not exist or is not a regular file", path);
  auto impl = std::make_unique<Impl>();
  std::unordered_map<std::string, std::string> extra{{"pikv.json", ""}};
  try {
    impl->module = torch::jit::load(path, std::nullopt, extra);
  } catch (const std::exception& e) {
    PIKV_FAIL("'{}' is not a TorchScript file: {}", path, detail::graph_error_text(e));
  }
  std::map<std::string, std::string> meta;
  if (!extra["pikv.json"].empty()) {
    try {
      const nlohmann::json j = nlohmann::json::parse(extra["pikv.json"]);  // outlives the loop (C++17)
      PIKV_CHECK(j.is_object(), "'{}': its pikv.json is not a JSON object", path);
      for (const auto& [k, v] : j.items()) {
        meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    } catch (const std::exception& e) {
      PIKV_FAIL("'{}': its pikv.json is not a JSON object of strings: {}", path, e.what());
    }
  }
  GraphModelInfo info = GraphModelInfo::parse(meta, path);
  detail::check_graph_device(info.device, path);
  check_graph_options(info, options, path);
  impl->module.eval();
  return std::unique_ptr<ScriptedModel>(new ScriptedModel(std::move(info), path, std::move(impl)));
}

PIKV_INLINE void ScriptedModel::bind(KVCache& cache) {
  for (int64_t l = 0; l < num_layers(); ++l) {
    const KVCache::FixedBuffers& b = cache.fixed_buffers(l);
    const auto& names = info().cache_names[static_cast<size_t>(l)];
    const at::Tensor* tensors[3] = {&b.keys, &b.values, &b.slots};
    for (int i = 0; i < 3; ++i) {
      // "a.b.c": walk the submodules, then replace the buffer attribute.
      const auto parts = detail::split_graph_list(names[i], '.');
      torch::jit::Module owner = impl_->module;
      for (size_t p = 0; p + 1 < parts.size(); ++p) owner = owner.attr(parts[p]).toModule();
      PIKV_CHECK(owner.hasattr(parts.back()), "'{}': the module has no cache buffer '{}'", path(), names[i]);
      owner.setattr(parts.back(), *tensors[i]);
    }
  }
}

PIKV_INLINE at::Tensor ScriptedModel::run(const at::Tensor& input_ids, const at::Tensor& positions) {
  return impl_->module.forward({input_ids, positions}).toTensor();
}

namespace detail {
inline bool ends_with(const std::string& path, const std::string& e) {
  return path.size() > e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
}
}  // namespace detail

PIKV_INLINE void check_graph_options(const GraphModelInfo& info, const LoadOptions& options, const std::string& path) {
  if (options.dtype()) {
    PIKV_CHECK(*options.dtype() == info.dtype,
               "'{}' was exported in {}, LoadOptions asks for dtype {}: an exported graph runs in the dtype it was "
               "exported in (leave the dtype unset, or export the model again with pikv_export's --dtype)",
               path, dtype_name(info.dtype), dtype_name(*options.dtype()));
  }
  if (options.kv_dtype()) {
    PIKV_CHECK(*options.kv_dtype() == info.dtype,
               "'{}' keeps its KV cache in {}, the dtype it was exported in, LoadOptions asks for kv_dtype {}: an "
               "exported graph's cache buffers have its dtype (leave kv_dtype unset)",
               path, dtype_name(info.dtype), dtype_name(*options.kv_dtype()));
  }
  if (options.device()) {
    const at::Device want = *options.device();
    PIKV_CHECK(want.type() == info.device.type(),
               "'{}' was exported for {}, LoadOptions asks for device {}: an exported graph runs on the device it "
               "was exported for (leave the device unset, or export the model again with pikv_export's --device {})",
               path, info.device.str(), want.str(), c10::DeviceTypeName(want.type(), /*lower_case=*/true));
    if (want.is_cuda() && want.has_index() && torch::cuda::is_available()) {
      const at::Device current = detail::graph_run_device(info.device);
      PIKV_CHECK(want == current,
                 "'{}' runs on the current CUDA device ({}), LoadOptions asks for device {}: select the GPU before "
                 "loading (CUDA_VISIBLE_DEVICES, or make it the current device), or leave the device unset",
                 path, current.str(), want.str());
    }
  }
}

PIKV_INLINE bool is_graph_file(const std::string& path) {
  return detail::ends_with(path, ".pt2") || detail::ends_with(path, ".pt");
}

PIKV_INLINE std::unique_ptr<CausalLM> load_causal_lm(const std::string& path, const LoadOptions& options) {
  if (detail::ends_with(path, ".pt2")) return ExportedModel::load(path, options);
  if (detail::ends_with(path, ".pt")) return ScriptedModel::load(path, options);
  return DecoderModel::load(path, options);
}

}  // namespace pikv
