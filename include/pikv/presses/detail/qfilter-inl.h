#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/detail/json.h>
#include <pikv/io/safetensors.h>
#include <pikv/presses/qfilter.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace pikv {

PIKV_INLINE QFilterPress::QFilterPress(const QFilterOptions& options) : ScorerPressBase(options) {
  const std::string& dir = options_.filters();
  if (dir.empty()) return;
  const std::string path = dir + "/model.safetensors";
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  // kvpress's loader would leave a misnamed tensor at its random initialisation; refuse instead.
  PIKV_CHECK(file.contains("q_filters"),
             "qfilter: {} has no q_filters tensor (write the folder with `pikv calibrate qfilter`)", path);
  filters_ = file.get("q_filters").to(at::kFloat).contiguous();
  PIKV_CHECK(filters_.dim() == 3 && filters_.numel() > 0, "qfilter: {} holds q_filters {}; expected [L, Hkv, d]", path,
             describe_tensor(filters_));
  PIKV_CHECK(filters_.isfinite().all().item<bool>(), "qfilter: {} holds non-finite filters", path);
  const std::string config_path = dir + "/config.json";
  if (std::filesystem::exists(config_path)) {
    const nlohmann::json config = detail::read_json_file(config_path, "Q-filters config");
    const char* keys[] = {"num_layers", "num_kv_heads", "kv_head_dim"};
    for (int i = 0; i < 3; ++i) {
      PIKV_CHECK(config.contains(keys[i]) && config[keys[i]].is_number_integer(),
                 "qfilter: {} needs an integer '{}'", config_path, keys[i]);
      PIKV_CHECK(config[keys[i]].get<int64_t>() == filters_.size(i),
                 "qfilter: {} says {} = {}, but q_filters in model.safetensors is {}", config_path, keys[i],
                 config[keys[i]].get<int64_t>(), describe_tensor(filters_));
    }
  }
}

PIKV_INLINE void QFilterPress::on_attach(const HookableModel& model) {
  PIKV_CHECK(!filters_.defined() || filters_.size(0) == model.num_layers(),
             "qfilter: the filters in {} are for {} layers; this model has {} (filters of another model?)",
             options_.filters(), filters_.size(0), model.num_layers());
}

PIKV_INLINE at::Tensor QFilterPress::score(const AttentionContext& ctx, double) const {
  PIKV_CHECK(filters_.defined(),
             "qfilter needs Q-filters: filters=DIR, written by `pikv calibrate qfilter --model M --out DIR`");
  PIKV_CHECK(ctx.layer < filters_.size(0) && filters_.size(1) == ctx.kv_heads() && filters_.size(2) == ctx.head_dim(),
             "qfilter: the filters in {} are for {} layers x {} KV heads x head_dim {}; this model's layer {} has {} "
             "KV heads of {} (filters of another model?)",
             options_.filters(), filters_.size(0), filters_.size(1), filters_.size(2), ctx.layer, ctx.kv_heads(),
             ctx.head_dim());
  const auto type = at::promote_types(ctx.keys.scalar_type(), at::kFloat);
  const at::Tensor f = filters_[ctx.layer].to(ctx.keys.device(), type).view({1, ctx.kv_heads(), 1, ctx.head_dim()});
  return -(ctx.keys.to(type) * f).sum(-1);
}

PIKV_INLINE void QFilterPress::write_filters(const std::string& dir, const at::Tensor& filters) {
  PIKV_CHECK(filters.defined() && filters.dim() == 3, "QFilterPress::write_filters: filters must be [L, Hkv, d], got {}",
             describe_tensor(filters));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PIKV_CHECK(!ec, "cannot create the Q-filters folder '{}': {}", dir, ec.message());
  const nlohmann::json config = {
      {"num_layers", filters.size(0)}, {"num_kv_heads", filters.size(1)}, {"kv_head_dim", filters.size(2)}};
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  io::save_safetensors(dir + "/model.safetensors", {{"q_filters", filters.to(at::kCPU, at::kFloat).contiguous()}});
}

PIKV_REGISTER_PRESS(QFilterPress,
                    options_press<QFilterPress>("keys scored by their projection on the dominant query direction "
                                                "(filters from pikv calibrate qfilter)"));

}  // namespace pikv
