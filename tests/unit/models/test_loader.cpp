// Checkpoint loading (models/loader.h): Hugging Face folders and GGUF checkpoints, valid and broken,
// as untrusted input: metadata against tensors, non-finite weights, shapes checked before data is read.
#include <pikv/pikv.h>
#include <pikv/io/files.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"
#include "gguf_writer.h"
#include "test_files.h"

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
using pikv::test::Gguf;
using pikv::test::config_with;
using pikv::test::gemma3_gguf;
using pikv::test::hf_checkpoint;
using pikv::test::hf_weights;
using pikv::test::kConfig;
using pikv::test::kTF16;
using pikv::test::kTQ8_0;
using pikv::test::kTinyConfig;
using pikv::test::tiny_llama;
using pikv::test::tiny_weights;
using pikv::test::write_checkpoint;
using pikv::test::write_file;
using pikv::test::write_text;

TEST(HFLoader, LoadsAndRejectsBrokenCheckpoints) {
  const std::string good = write_checkpoint("hf-good", kTinyConfig, tiny_weights());
  auto model = DecoderModel::load(good);
  EXPECT_EQ(model->num_layers(), 2);

  EXPECT_PIKV_ERROR(DecoderModel::load(good + "/nope"), "does not exist");
  // Half-precision checkpoints load into any compute dtype.
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    WeightMap half = tiny_weights();
    for (auto& [name, t] : half) t = t.to(dtype);
    auto m = DecoderModel::load(write_checkpoint("hf-half", kTinyConfig, half));
    KVCache cache(2);
    EXPECT_EQ(m->forward(at::zeros({1, 3}, at::kLong), cache).scalar_type(), at::kFloat);
  }

  const std::string no_config = test::temp_dir("hf-noconfig");
  EXPECT_PIKV_ERROR(DecoderModel::load(no_config), "without config.json");

  WeightMap missing = tiny_weights();
  missing.erase("model.layers.1.mlp.up_proj.weight");
  EXPECT_PIKV_ERROR(DecoderModel::load(write_checkpoint("hf-missing", kTinyConfig, missing)), "hf-missing",
                    "missing tensor 'model.layers.1.mlp.up_proj.weight'");

  WeightMap wrong = tiny_weights();
  wrong["model.layers.0.self_attn.k_proj.weight"] = at::zeros({16, 16});
  EXPECT_PIKV_ERROR(DecoderModel::load(write_checkpoint("hf-shape", kTinyConfig, wrong)),
                    "'model.layers.0.self_attn.k_proj.weight' has shape [16, 16]", "implies [8, 16]");

  WeightMap ints = tiny_weights();
  ints["model.norm.weight"] = at::ones({16}, at::kInt);
  EXPECT_PIKV_ERROR(DecoderModel::load(write_checkpoint("hf-int", kTinyConfig, ints)), "model.norm.weight",
                    "non-floating dtype int32");

  const std::string sharded = test::temp_dir("hf-shards");
  write_text(sharded + "/config.json", kTinyConfig);
  write_text(sharded + "/model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
  EXPECT_PIKV_ERROR(DecoderModel::load(sharded), "shard 'model-00001-of-00002.safetensors' is listed but missing");

  const std::string empty = test::temp_dir("hf-noweights");
  write_text(empty + "/config.json", kTinyConfig);
  EXPECT_PIKV_ERROR(DecoderModel::load(empty), "neither model.safetensors nor model.safetensors.index.json");
}

TEST(GGUF, Gemma3FilesMapToTheGemmaDecoder) {
  const std::string dir = test::temp_dir("gguf-gemma3");
  const Checkpoint ck = read_gguf_checkpoint(write_file(dir, "g.gguf", gemma3_gguf()));
  const ModelConfig& c = ck.config;
  EXPECT_EQ(c.arch, Architecture::gemma3);
  EXPECT_EQ(c.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, std::optional<int64_t>(8));
  for (int64_t l = 0; l < 6; ++l) EXPECT_EQ(c.is_sliding(l), l != 5) << "layer " << l;
  EXPECT_DOUBLE_EQ(c.attention_scale, 0.25);  // 1 / sqrt(head_dim 16)
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rope_local.theta, 1e4);
  // Stored 1 + w, held as w; q/k rows are not un-permuted (Gemma's RoPE is half-split in GGUF too).
  for (const char* n : {"model.norm.weight", "model.layers.0.input_layernorm.weight",
                        "model.layers.3.pre_feedforward_layernorm.weight", "model.layers.5.self_attn.k_norm.weight"}) {
    EXPECT_TRUE(at::allclose(ck.weights.at(n), at::full_like(ck.weights.at(n), 0.25))) << n;
  }
  const at::Tensor q = (at::arange(32 * 32, at::kFloat).remainder(17) * 0.01 - 0.08).view({32, 32});
  EXPECT_TRUE(at::allclose(ck.weights.at("model.layers.0.self_attn.q_proj.weight"), q));
  // The decoder runs it.
  auto model = DecoderModel::load(write_file(dir, "g2.gguf", gemma3_gguf()), LoadOptions().dequantize(true));
  KVCache cache(model->num_layers());
  const at::Tensor logits = model->forward(at::arange(12, at::kLong).unsqueeze(0), cache);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 12, 64}));
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  EXPECT_EQ(cache.physical_length(0), 8);  // a sliding layer keeps its window
  EXPECT_EQ(cache.physical_length(5), 12);

  EXPECT_PIKV_ERROR(read_gguf_checkpoint(write_file(dir, "nok.gguf", gemma3_gguf("blk.2.attn_k_norm.weight"))),
                    "no tensor 'blk.2.attn_k_norm.weight'", "gemma3.block_count is 6");
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(write_file(dir, "q8.gguf", gemma3_gguf("", true))),
                    "blk.0.attn_norm.weight", "Q8_0", "must be F32, F16 or BF16");
}

// ---------------------------------------------------------------------------------------------------
// GGUF checkpoints: metadata against tensors
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedGGUF, TinyLlamaLoadsAndRuns) {
  const std::string dir = test::temp_dir("untrusted-tiny");
  auto model = DecoderModel::load(tiny_llama().write(dir, "tiny.gguf"));
  KVCache cache(2);
  at::Tensor logits = model->forward(at::arange(5, at::kLong).view({1, 5}), cache);
  EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{1, 5, 64}));
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
}

TEST(UntrustedGGUF, HeadCountsMustAgreeWithTensors) {
  const std::string dir = test::temp_dir("untrusted-heads");
  Gguf g = tiny_llama();
  g.u32("llama.attention.head_count_kv", 2);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "kv.gguf")), "kv.gguf", "tensor 'blk.0.attn_k.weight'",
                    "shape [16, 32]", "attention.head_count_kv 2", "implies [32, 32]");
  g.u32("llama.attention.head_count_kv", 3);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "kv3.gguf")), "attention.head_count_kv", "[1, 2]", "got 3");
  Gguf q = tiny_llama();
  q.u32("llama.attention.head_count", 4);  // head dim 8 then: q would be [32, 32] still, k [8, 32]
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(q.write(dir, "q.gguf")), "tensor 'blk.0.attn_k.weight'", "implies [8, 32]");
}

TEST(UntrustedGGUF, TensorDimensionsMustAgreeWithConfig) {
  const std::string dir = test::temp_dir("untrusted-dims");
  Gguf g = tiny_llama();
  g.u32("llama.feed_forward_length", 48);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "ffn.gguf")), "tensor 'blk.0.ffn_gate.weight'",
                    "shape [64, 32]", "feed_forward_length 48", "implies [48, 32]");
  Gguf e = tiny_llama();
  e.u32("llama.embedding_length", 64);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(e.write(dir, "embd.gguf")), "tensor 'token_embd.weight'", "shape [64, 32]",
                    "implies [64, 64]");
  Gguf v = tiny_llama();
  v.u32("llama.vocab_size", 100);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(v.write(dir, "vocab.gguf")), "token_embd.weight", "vocab size 100");
  Gguf k = tiny_llama();
  k.u64("llama.attention.key_length", 1000000000000ull);  // head_dim 1e12
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(k.write(dir, "hd.gguf")), "hd.gguf", "llama.attention.key_length",
                    "[1, 4096]", "got 1000000000000");
  Gguf r = tiny_llama();
  r.u32("llama.rope.dimension_count", 8);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(r.write(dir, "rot.gguf")), "rope.dimension_count 8", "head dimension 16");
}

TEST(UntrustedGGUF, BlockCountMustMatchTheBlocksPresent) {
  const std::string dir = test::temp_dir("untrusted-blocks");
  Gguf small = tiny_llama();
  small.u32("llama.block_count", 1);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(small.write(dir, "small.gguf")), "small.gguf", "'blk.1.attn_norm.weight'",
                    "block 1", "llama.block_count is 1");
  Gguf large = tiny_llama();
  large.u32("llama.block_count", 3);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(large.write(dir, "large.gguf")), "no tensor 'blk.2.attn_norm.weight'",
                    "llama.block_count is 3");
  Gguf huge = tiny_llama();
  huge.u64("llama.block_count", 1000000000000ull);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(huge.write(dir, "huge.gguf")), "llama.block_count", "[1, 10000]",
                    "got 1000000000000");
  Gguf missing = tiny_llama();
  missing.drop("blk.1.ffn_norm.weight");
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(missing.write(dir, "missing.gguf")), "no tensor 'blk.1.ffn_norm.weight'");
}

TEST(UntrustedGGUF, NormTensorsMustBeFloat) {
  const std::string dir = test::temp_dir("untrusted-norm");
  Gguf g = tiny_llama();
  // A well-formed Q8_0 norm (one block: f16 scale 1.0, 32 x int8 1): valid bytes, but not a float type.
  std::string block(34, '\1');
  block[0] = '\0';
  block[1] = '\x3c';  // f16 1.0
  Gguf::Tensor& t = g.tensor("blk.1.attn_norm.weight");
  t.type = kTQ8_0;
  t.data = block;
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "q8norm.gguf")), "norm tensor 'blk.1.attn_norm.weight'",
                    "GGML type Q8_0", "F32, F16 or BF16");
}

TEST(UntrustedGGUF, NonFiniteWeightsAreRefused) {
  const std::string dir = test::temp_dir("untrusted-nan");
  Gguf g = tiny_llama();
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&g.tensor("blk.1.ffn_down.weight").data[4 * 7], &nan, 4);
  const std::string path = g.write(dir, "nan.gguf");
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(path), "nan.gguf", "tensor 'blk.1.ffn_down.weight'", "non-finite value (nan)",
                    "element 7");
  EXPECT_PIKV_ERROR(DecoderModel::load(path), "blk.1.ffn_down.weight", "non-finite");
  // The opt-out for speed loads it anyway.
  CheckpointOptions fast;
  fast.check_finite = false;
  EXPECT_NO_THROW(read_gguf_checkpoint(path, fast));
  // Infinity from an F16 tensor.
  Gguf h = tiny_llama();
  std::string f16(32 * 2, '\0');
  for (int i = 0; i < 32; ++i) f16[2 * i + 1] = '\x3c';  // 1.0
  f16[2 * 5] = '\0';
  f16[2 * 5 + 1] = '\x7c';  // +inf
  Gguf::Tensor& n = h.tensor("output_norm.weight");
  n.type = kTF16;
  n.data = f16;
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(h.write(dir, "inf.gguf")), "tensor 'output_norm.weight'",
                    "non-finite value (inf)", "element 5");
}

TEST(UntrustedGGUF, QuantisedBlockScalesAreChecked) {
  const std::string dir = test::temp_dir("untrusted-quant-nan");
  struct Q {
    uint32_t type;
    size_t block_bytes;
    int64_t block_values;
    std::vector<size_t> scale_offsets;
  };
  const Q types[] = {{8, 34, 32, {0}}, {2, 18, 32, {0}}, {3, 20, 32, {0, 2}}, {12, 144, 256, {0, 2}}, {14, 210, 256, {208}}};
  for (const Q& q : types) {
    for (size_t which = 0; which < q.scale_offsets.size(); ++which) {
      for (uint16_t bad : {uint16_t{0x7E00}, uint16_t{0x7C00}, uint16_t{0xFC00}}) {  // nan, +inf, -inf
        std::string data;
        for (int b = 0; b < 4; ++b) {
          std::string block(q.block_bytes, '\0');
          for (size_t i = 0; i < q.block_bytes; ++i) block[i] = static_cast<char>((i * 37 + static_cast<size_t>(b) * 11) & 0xFF);
          for (size_t off : q.scale_offsets) {
            block[off] = '\0';
            block[off + 1] = '\x20';  // f16 0x2000: a small finite scale
          }
          if (b == 2) std::memcpy(&block[q.scale_offsets[which]], &bad, 2);
          data += block;
        }
        Gguf g;
        g.tensor_raw("q", {static_cast<uint64_t>(4 * q.block_values)}, q.type, data);
        auto f = io::GGUFFile::open(g.write(dir, "q.gguf"));
        const at::Tensor values = f.load("q");
        const at::Tensor non_finite = at::isfinite(values).logical_not().nonzero();
        ASSERT_GT(non_finite.numel(), 0) << io::ggml_type_name(q.type);
        EXPECT_EQ(f.first_non_finite("q"), non_finite[0].item<int64_t>()) << io::ggml_type_name(q.type);
        EXPECT_EQ(f.first_non_finite("q"), 2 * q.block_values) << io::ggml_type_name(q.type);
      }
    }
  }
  // Through the loader: a Q8_0 projection whose fourth block has a NaN scale.
  Gguf g = tiny_llama();
  std::string q8;
  for (int b = 0; b < 64; ++b) {
    std::string block(34, '\x01');
    block[0] = '\0';
    block[1] = b == 3 ? '\x7E' : '\x20';
    q8 += block;
  }
  Gguf::Tensor& t = g.tensor("blk.0.ffn_gate.weight");
  t.type = kTQ8_0;
  t.data = q8;
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "q8nan.gguf")), "q8nan.gguf", "tensor 'blk.0.ffn_gate.weight'",
                    "non-finite value (nan)", "element 96");
}

TEST(UntrustedGGUF, AbsurdHyperParametersAreRefused) {
  const std::string dir = test::temp_dir("untrusted-hparams");
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (float base : {0.0f, -10000.0f, nan, inf, 1.0f}) {
    Gguf g = tiny_llama();
    g.f32("llama.rope.freq_base", base);
    const std::string got = fmt::format("got {}", static_cast<double>(base));
    EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "base.gguf")), "base.gguf", "metadata 'llama.rope.freq_base'",
                      "finite number in (1, 1e+12]", got.c_str());
  }
  for (float eps : {0.0f, -1e-5f, nan, inf}) {
    Gguf g = tiny_llama();
    g.f32("llama.attention.layer_norm_rms_epsilon", eps);
    const std::string got = fmt::format("got {}", static_cast<double>(eps));
    EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "eps.gguf")), "llama.attention.layer_norm_rms_epsilon",
                      got.c_str());
  }
  for (float factor : {0.0f, -2.0f, nan, inf}) {
    Gguf g = tiny_llama();
    g.str("llama.rope.scaling.type", "linear");
    g.f32("llama.rope.scaling.factor", factor);
    const std::string got = fmt::format("got {}", static_cast<double>(factor));
    EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "factor.gguf")), "llama.rope.scaling.factor", got.c_str());
  }
  for (int64_t ctx : {0ll, -1ll}) {
    Gguf g = tiny_llama();
    g.i64("llama.context_length", ctx);
    const std::string got = fmt::format("got {}", ctx);
    EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "ctx.gguf")), "llama.context_length", got.c_str());
  }
  Gguf g = tiny_llama();
  g.f32("llama.embedding_length", 32.5f);
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(g.write(dir, "frac.gguf")), "llama.embedding_length", "not an integer");
}

TEST(UntrustedGGUF, RopeFrequencyFactorsAreApplied) {
  const std::string dir = test::temp_dir("untrusted-ropefreqs");
  auto plain = DecoderModel::load(tiny_llama().write(dir, "plain.gguf"));
  Gguf g = tiny_llama();
  g.tensor_f32("rope_freqs.weight", {8}, {1, 1, 2, 2, 4, 4, 8, 8});
  auto scaled = DecoderModel::load(g.write(dir, "freqs.gguf"));
  for (auto* m : {plain.get(), scaled.get()}) {  // RoPE tables are set by a forward
    KVCache cache(2);
    m->forward(at::zeros({1, 1}, at::kLong), cache);
  }
  const at::Tensor factors = at::tensor({1.f, 1.f, 2.f, 2.f, 4.f, 4.f, 8.f, 8.f});
  EXPECT_TRUE(test::tensors_close(scaled->layer(1).inv_freq(), plain->layer(1).inv_freq() / factors, 1e-6, 0));
  Gguf bad = tiny_llama();
  bad.tensor_f32("rope_freqs.weight", {8}, {1, 1, 0, 2, 4, 4, 8, 8});
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(bad.write(dir, "zero.gguf")), "rope_freqs.weight[2]", "got 0");
  Gguf wrong = tiny_llama();
  wrong.tensor_f32("rope_freqs.weight", {4}, {1, 1, 1, 1});
  EXPECT_PIKV_ERROR(read_gguf_checkpoint(wrong.write(dir, "short.gguf")), "rope_freqs.weight", "[8]", "[4]");
}

TEST(UntrustedHF, NonFiniteWeightsAreRefused) {
  WeightMap w = hf_weights();
  w["model.layers.1.mlp.up_proj.weight"][3][5] = std::numeric_limits<float>::quiet_NaN();
  const std::string dir = hf_checkpoint("untrusted-hf-nan", kConfig, w);
  EXPECT_PIKV_ERROR(read_hf_checkpoint(dir), "model.safetensors", "tensor 'model.layers.1.mlp.up_proj.weight'",
                    "non-finite value (nan)", "element 53");
  EXPECT_PIKV_ERROR(DecoderModel::load(dir), "non-finite");
  CheckpointOptions fast;
  fast.check_finite = false;
  EXPECT_NO_THROW(read_hf_checkpoint(dir, fast));
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    WeightMap h = hf_weights();
    for (auto& [name, t] : h) t = t.to(dtype);
    h["model.norm.weight"][0] = -std::numeric_limits<float>::infinity();
    EXPECT_PIKV_ERROR(read_hf_checkpoint(hf_checkpoint("untrusted-hf-inf", kConfig, h)), "tensor 'model.norm.weight'",
                      "non-finite value (-inf)", "element 0");
  }
  // check_weights on a map built in memory
  WeightMap m = hf_weights();
  m["model.embed_tokens.weight"][0][0] = std::numeric_limits<float>::infinity();
  EXPECT_PIKV_ERROR(check_weights(ModelConfig::from_json_text(kConfig, "cfg"), m, "in-memory"), "in-memory",
                    "model.embed_tokens.weight", "non-finite value (inf)");
}

TEST(UntrustedHF, ShapesAreCheckedBeforeDataIsRead) {
  WeightMap w = hf_weights();
  w["model.layers.0.mlp.down_proj.weight"] = at::zeros({16, 8});
  const std::string dir = hf_checkpoint("untrusted-hf-shape", kConfig, w);
  EXPECT_PIKV_ERROR(read_hf_checkpoint(dir), "untrusted-hf-shape", "tensor 'model.layers.0.mlp.down_proj.weight'",
                    "shape [16, 8]", "implies [16, 24]");
  // The config may not claim more layers than the file has.
  const std::string more = hf_checkpoint("untrusted-hf-layers", config_with("num_hidden_layers", "3"), hf_weights());
  EXPECT_PIKV_ERROR(read_hf_checkpoint(more), "missing tensor 'model.layers.2.input_layernorm.weight'");
  // A sharded index whose weight_map names a non-string file.
  const std::string idx = test::temp_dir("untrusted-hf-index");
  write_text(idx + "/config.json", kConfig);
  write_text(idx + "/model.safetensors.index.json", R"({"weight_map": {"model.norm.weight": 7}})");
  EXPECT_PIKV_ERROR(read_hf_checkpoint(idx), "model.safetensors.index.json",
                    "weight_map['model.norm.weight'] must be a file name, got 7");
  write_text(idx + "/model.safetensors.index.json", R"({"weight_map": {"model.norm.weight": ".."}})");
  EXPECT_PIKV_ERROR(read_hf_checkpoint(idx), "shard name '..' must be a file in the folder");
}

// ---------------------------------------------------------------------------------------------------
// The cost of the non-finite check on the default model (run by hand:
//   build/bin/pikv_unit_tests --gtest_also_run_disabled_tests --gtest_filter='*LoadTimeOfTheFiniteCheck*')
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedGGUF, DISABLED_LoadTimeOfTheFiniteCheck) {
  const char* env = std::getenv("PIKV_DEFAULT_MODEL");
  const std::string model = env ? env : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!is_regular_file(model)) GTEST_SKIP() << "no default model at " << model;
  CheckpointOptions on, off;
  off.check_finite = false;
  // Medians of 7 runs of each, interleaved (with, without, with, ...) so that load from other
  // processes hits both alike.
  auto compare = [](const char* what, const std::function<void(bool)>& load) {
    load(true);  // warm the page cache
    std::vector<double> t[2];
    for (int i = 0; i < 7; ++i) {
      for (int check = 1; check >= 0; --check) {
        const auto t0 = std::chrono::steady_clock::now();
        load(check == 1);
        t[check].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    std::printf("%s, median of 7: %.3f s with the finite check, %.3f s without (%+.1f%%)\n", what, t[1][3], t[0][3],
                100.0 * (t[1][3] - t[0][3]) / t[0][3]);
  };
  {  // the raw scan by itself
    auto f = io::GGUFFile::open(model);
    const auto t0 = std::chrono::steady_clock::now();
    int64_t bad = 0;
    for (const auto& t : f.tensors()) bad += f.first_non_finite(t.name) >= 0;
    std::printf("GGUFFile::first_non_finite over all %zu tensors of %s: %.4f s (%lld with NaN/inf)\n",
                f.tensors().size(), model.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                static_cast<long long>(bad));
  }
  compare("read_gguf_checkpoint(default model)", [&](bool check) { read_gguf_checkpoint(model, check ? on : off); });
  // DecoderModel::load reads with the default options: the environment variable turns the check off.
  auto model_load = [](const std::string& path, bool check) {
    if (!check) ::setenv("PIKV_SKIP_FINITE_CHECK", "1", 1);
    (void)DecoderModel::load(path);
    ::unsetenv("PIKV_SKIP_FINITE_CHECK");
  };
  compare("DecoderModel::load(default model)", [&](bool check) { model_load(model, check); });
  // The same weights as a bfloat16 Hugging Face folder (the check then scans every used tensor).
  Checkpoint c = read_gguf_checkpoint(model);
  const ModelConfig& m = c.config;
  const std::string dir = test::temp_dir("finite-timing");
  write_text(dir + "/config.json",
             fmt::format(R"({{"model_type": "llama", "vocab_size": {}, "hidden_size": {}, "intermediate_size": {},
               "num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "head_dim": {},
               "max_position_embeddings": {}, "rms_norm_eps": {}, "rope_theta": {}, "tie_word_embeddings": {}}})",
                         m.vocab_size, m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads,
                         m.head_dim, m.max_position_embeddings, m.norm_eps, m.rope.theta, m.tie_word_embeddings));
  std::vector<std::pair<std::string, at::Tensor>> list;
  for (auto& [name, t] : c.weights) list.emplace_back(name, t.to(at::kBFloat16));
  c.weights.clear();
  io::save_safetensors(dir + "/model.safetensors", list);
  list.clear();
  compare("read_hf_checkpoint(bf16 copy)", [&](bool check) { read_hf_checkpoint(dir, check ? on : off); });
  compare("DecoderModel::load(bf16 copy)", [&](bool check) { model_load(dir, check); });
  std::remove((dir + "/model.safetensors").c_str());
}
