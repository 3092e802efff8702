// Model configs (models/config.h): parsing and validation, and config.json as untrusted input.
#include <pikv/pikv.h>
#include <pikv/io/files.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sys/stat.h>
#include <sys/types.h>

using namespace pikv;
using pikv::test::config_with;
using pikv::test::kConfig;
using pikv::test::kTinyConfig;

TEST(ModelConfig, ParsesAndValidates) {
  ModelConfig c = ModelConfig::from_json_text(kTinyConfig, "tiny");
  EXPECT_EQ(c.arch, Architecture::llama);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.rotary_dim(), 8);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text("{", "cfg.json"), "cfg.json", "not valid JSON");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(R"({"model_type": "bert"})", "cfg.json"), "unsupported architecture 'bert'",
                    "llama, mistral");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(R"({"hidden_size": 4})", "cfg.json"), "model_type");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(R"({"model_type": "llama", "vocab_size": 8})", "cfg.json"),
                    "missing 'hidden_size'");
  std::string bad_heads = kTinyConfig;
  bad_heads.replace(bad_heads.find("\"num_key_value_heads\": 1"), 24, "\"num_key_value_heads\": 3");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(bad_heads, "cfg.json"), "num_attention_heads=2", "num_key_value_heads=3");
  std::string bad_rope = kTinyConfig;
  bad_rope.replace(bad_rope.size() - 1, 1, R"x(, "rope_scaling": {"rope_type": "magic", "factor": 2}})x");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(bad_rope, "cfg.json"), "unsupported rope type 'magic'");
  std::string bad_act = kTinyConfig;
  bad_act.replace(bad_act.size() - 1, 1, R"x(, "hidden_act": "relu6"})x");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(bad_act, "cfg.json"), "unsupported activation 'relu6'");
}

TEST(UntrustedConfig, IntegersMustBeIntegralAndBounded) {
  EXPECT_NO_THROW(ModelConfig::from_json_text(kConfig, "cfg.json"));
  EXPECT_NO_THROW(ModelConfig::from_json_text(config_with("hidden_size", "16.0"), "cfg.json"));
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("hidden_size", "16.5"), "cfg.json"), "cfg.json",
                    "'hidden_size' must be an integer, got 16.5");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("hidden_size", "\"16\""), "cfg.json"),
                    "'hidden_size' must be an integer, got \"16\" (string)");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("num_hidden_layers", "1000000000000"), "cfg.json"),
                    "num_hidden_layers must be in [1, 10000], got 1000000000000");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("num_hidden_layers", "1e12"), "cfg.json"),
                    "num_hidden_layers must be in [1, 10000], got 1000000000000");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("head_dim", "1000000000000"), "cfg.json"),
                    "head_dim must be in [1, 4096], got 1000000000000");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("vocab_size", "1000000000000"), "cfg.json"),
                    "vocab_size must be in [1, 16777216], got 1000000000000");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("hidden_size", "4194304"), "cfg.json"),
                    "hidden_size must be in [1, 1048576], got 4194304");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("vocab_size", "18446744073709551615"), "cfg.json"),
                    "'vocab_size' must be an integer in int64 range");
  for (const char* bad : {"0", "-1"}) {
    const std::string expected = fmt::format("max_position_embeddings must be in [1, 268435456], got {}", bad);
    EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("max_position_embeddings", bad), "cfg.json"),
                      expected.c_str());
  }
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("tie_word_embeddings", "\"yes\""), "cfg.json"),
                    "'tie_word_embeddings' must be true or false, got \"yes\"");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("layer_types", "[1, 2]"), "cfg.json"),
                    "layer_types[0] must be a string, got 1");
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("eos_token_id", "[2, \"x\"]"), "cfg.json"),
                    "'eos_token_id[1]' must be an integer");
}

TEST(UntrustedConfig, FloatsMustBeFiniteAndSane) {
  auto expect = [](const std::string& key, const std::string& value, const char* fragment) {
    EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with(key, value), "cfg.json"), "cfg.json", fragment);
  };
  // (JSON cannot spell NaN or infinity; 1e400 is refused by the parser as a number overflow.)
  EXPECT_PIKV_ERROR(ModelConfig::from_json_text(config_with("rms_norm_eps", "1e400"), "cfg.json"), "cfg.json",
                    "number overflow");
  for (const char* eps : {"0", "-1e-6", "2"}) expect("rms_norm_eps", eps, "the norm epsilon must be a finite number in (0, 1]");
  for (const char* theta : {"0", "-10000", "1", "0.5", "1e13"}) expect("rope_theta", theta, "rope_theta must be a finite number in (1, 1e+12]");
  expect("rope_theta", "\"big\"", "'rope_theta' must be a number, got \"big\" (string)");
  for (const char* factor : {"0", "-2", "1e9"}) {
    expect("rope_scaling", std::string(R"({"rope_type": "linear", "factor": )") + factor + "}",
           "rope scaling factor must be a finite number in (0, 1e+06]");
  }
  expect("rope_scaling", R"({"rope_type": "linear", "factor": "2"})", "'rope_scaling.factor' must be a number");
  expect("rope_scaling", R"({"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4,
                             "original_max_position_embeddings": 32})",
         "high_freq_factor (4) must exceed low_freq_factor (4)");
  expect("rope_scaling", R"({"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                             "original_max_position_embeddings": -1})",
         "original_max_position_embeddings must be in [1, 268435456], got -1");
  expect("rope_scaling", R"({"rope_type": "yarn", "factor": 4, "beta_fast": -32})", "beta_fast must be a finite number");
  expect("rope_scaling", R"({"rope_type": "yarn", "factor": 4, "attention_factor": 0})", "attention_factor");
  expect("rope_scaling", R"({"rope_type": "longrope", "short_factor": [1, 1, 1, 1], "long_factor": [1, 1, 0, 1],
                             "original_max_position_embeddings": 32})",
         "long_factor[2] must be a finite number in (0, 1e+06], got 0");
  expect("rope_scaling", R"({"rope_type": "longrope", "short_factor": [1, "x"], "long_factor": []})",
         "'rope_scaling.short_factor[1]' must be a number");
  expect("partial_rotary_factor", "1.5", "partial_rotary_factor must be in (0, 1], got 1.5");
  expect("partial_rotary_factor", "-0.5", "partial_rotary_factor must be in (0, 1], got -0.5");
  expect("sliding_window", "0", "sliding_window must be in [1, 268435456], got 0");
  expect("final_logit_softcapping", "-30", "final_logit_softcapping must be a finite number > 0, got -30");
}
