#pragma once
// A press's trained artefact in transformers' save_pretrained layout (DIR/config.json with a
// model_type, DIR/model.safetensors), read defensively: every missing or malformed entry is an error
// naming the press, the file and the entry (KVzap surrogates, Fast KVzip gates).

#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/detail/json.h>
#include <pikv/io/safetensors.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace pikv::detail {

class ArtefactFolder {
 public:
  // Reads DIR/config.json (its model_type must be `model_type`; `what` names it: "KVzap model config")
  // and opens DIR/model.safetensors.
  ArtefactFolder(std::string press, const std::string& dir, std::string_view what, const std::string& model_type)
      : press_(std::move(press)), config_path_(dir + "/config.json"), tensors_path_(dir + "/model.safetensors") {
    config_ = read_json_file(config_path_, what);
    PIKV_CHECK(config_.is_object() && config_.value("model_type", std::string()) == model_type,
               "{}: {} is not a {} (model_type must be \"{}\")", press_, config_path_, what, model_type);
    file_.emplace(io::SafetensorsFile::open(tensors_path_));
  }

  const nlohmann::json& config() const { return config_; }
  const std::string& config_path() const { return config_path_; }

  // The config's integer `key`, in [1, 2^20].
  int64_t positive(const char* key) const {
    PIKV_CHECK(config_.contains(key) && config_[key].is_number_integer() && config_[key].get<int64_t>() > 0 &&
                   config_[key].get<int64_t>() <= (int64_t{1} << 20),
               "{}: {} needs a positive integer '{}' (at most 2^20)", press_, config_path_, key);
    return config_[key].get<int64_t>();
  }

  // Tensor `name` as float32 of exactly `shape`, all finite.
  at::Tensor tensor(const std::string& name, const std::vector<int64_t>& shape) const {
    PIKV_CHECK(file_->contains(name), "{}: {} has no tensor '{}'", press_, tensors_path_, name);
    at::Tensor t = file_->get(name).to(at::kFloat).contiguous();
    PIKV_CHECK(t.sizes() == at::IntArrayRef(shape), "{}: {} holds {} as {}; the config asks for {}", press_,
               tensors_path_, name, describe_tensor(t), fmt::format("[{}]", fmt::join(shape, ", ")));
    PIKV_CHECK(t.isfinite().all().item<bool>(), "{}: {} holds non-finite values in {}", press_, tensors_path_, name);
    return t;
  }

 private:
  std::string press_, config_path_, tensors_path_;
  nlohmann::json config_;
  std::optional<io::SafetensorsFile> file_;
};

}  // namespace pikv::detail
