// Model loading: configs, Hugging Face folders and GGUF files built here (valid and broken), the
// decoder with presses, bf16. Every broken file must give a pikv::Error naming the file and problem.
#include <pikv/pikv.h>

#include "helpers.h"

#include <cstring>
#include <fstream>

using namespace pikv;

namespace {

// ---- a tiny Llama checkpoint written by hand ----

const char* kTinyConfig = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "rms_norm_eps": 1e-6, "tie_word_embeddings": false})";

WeightMap tiny_weights() {
  WeightMap w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    w[name] = norm ? 1.0 + 0.1 * test::randn(shape, seed++) : 0.3 * test::randn(shape, seed++);
  };
  add("model.embed_tokens.weight", {32, 16});
  add("model.norm.weight", {16}, true);
  add("lm_head.weight", {32, 16});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {16}, true);
    add(p + "post_attention_layernorm.weight", {16}, true);
    add(p + "self_attn.q_proj.weight", {16, 16});
    add(p + "self_attn.k_proj.weight", {8, 16});
    add(p + "self_attn.v_proj.weight", {8, 16});
    add(p + "self_attn.o_proj.weight", {16, 16});
    add(p + "mlp.gate_proj.weight", {24, 16});
    add(p + "mlp.up_proj.weight", {24, 16});
    add(p + "mlp.down_proj.weight", {16, 24});
  }
  return w;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string write_checkpoint(const std::string& name, const std::string& config, const WeightMap& weights) {
  const std::string dir = test::temp_dir(name);
  write_text(dir + "/config.json", config);
  std::vector<std::pair<std::string, at::Tensor>> list(weights.begin(), weights.end());
  io::save_safetensors(dir + "/model.safetensors", list);
  return dir;
}

// ---- a GGUF writer for tests ----

class GGUFBuilder {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    header_ += s;
  }
  void kv_u32(const std::string& key, uint32_t v) {
    str(key);
    u32(4);  // UINT32
    u32(v);
    ++kv_;
  }
  void kv_f32(const std::string& key, float v) {
    str(key);
    u32(6);  // FLOAT32
    raw(&v, 4);
    ++kv_;
  }
  void kv_str(const std::string& key, const std::string& v) {
    str(key);
    u32(8);  // STRING
    str(v);
    ++kv_;
  }
  // A float32 tensor (dims fastest first) with the given values.
  void tensor_f32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& values) {
    infos_.push_back({name, dims, 0, data_.size()});
    const size_t before = data_.size();
    data_.resize(before + values.size() * 4);
    std::memcpy(&data_[before], values.data(), values.size() * 4);
    data_.resize((data_.size() + 31) / 32 * 32, '\0');
  }
  // A tensor of any type given as its raw bytes.
  void tensor_bytes(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::string& bytes) {
    infos_.push_back({name, dims, type, data_.size()});
    data_ += bytes;
    data_.resize((data_.size() + 31) / 32 * 32, '\0');
  }
  // A tensor info with an explicit type / offset and no data of its own (for broken files).
  void tensor_raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    infos_.push_back({name, dims, type, offset});
  }
  std::string bytes(uint32_t version = 3) const {
    GGUFBuilder out;
    out.header_ = "GGUF";
    out.u32(version);
    out.u64(infos_.size());
    out.u64(kv_);
    out.header_ += header_;
    for (const auto& t : infos_) {
      out.str(t.name);
      out.u32(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) out.u64(d);
      out.u32(t.type);
      out.u64(t.offset);
    }
    std::string file = out.header_;
    file.resize((file.size() + 31) / 32 * 32, '\0');
    return file + data_;
  }

 private:
  struct Info {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    uint64_t offset;
  };
  void raw(const void* p, size_t n) { header_.append(static_cast<const char*>(p), n); }
  std::string header_;
  std::string data_;
  std::vector<Info> infos_;
  uint64_t kv_ = 0;
};

std::string write_file(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

}  // namespace

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

TEST(Decoder, InputChecksPressesAndBFloat16) {
  auto model = DecoderModel::load(write_checkpoint("hf-decoder", kTinyConfig, tiny_weights()));
  KVCache cache(model->num_layers());
  EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 4}, at::kInt), cache), "int64");
  EXPECT_PIKV_ERROR(model->forward(at::full({1, 4}, 32, at::kLong), cache), "[0, 32)", "[32, 32]");
  EXPECT_PIKV_ERROR(model->forward(at::zeros({4}, at::kLong), cache), "input_ids", "[B, T]");
  KVCache wrong(3);
  EXPECT_PIKV_ERROR(model->forward(at::zeros({1, 4}, at::kLong), wrong), "3 layers", "model has 2");

  // A press compresses every layer during prefill; the question continues at logical positions.
  const at::Tensor ids = at::arange(20, at::kLong).remainder(32).unsqueeze(0);
  KnormPress press(KnormOptions().compression_ratio(0.5));
  {
    PressGuard guard(*model, press);
    model->forward(ids, cache);
  }
  for (int64_t l = 0; l < 2; ++l) EXPECT_EQ(cache.physical_length(l), 10);
  EXPECT_EQ(model->compression_stats().layers.size(), 2u);
  at::Tensor next = model->forward(at::full({1, 1}, 3, at::kLong), cache);
  EXPECT_EQ(cache.logical_length(0), 21);
  EXPECT_EQ(cache.physical_length(0), 11);
  EXPECT_TRUE(at::isfinite(next).all().item<bool>());
  EXPECT_EQ(&model->layer(0), &model->layer(0));
  EXPECT_EQ(model->layer(1).num_kv_heads(), 1);
  EXPECT_EQ(model->layer(1).output_weight().sizes(), (std::vector<int64_t>{16, 16}));

  // bfloat16 weights and cache: close to float32.
  auto bf16 = DecoderModel::load(write_checkpoint("hf-bf16", kTinyConfig, tiny_weights()),
                                 LoadOptions().dtype(at::kBFloat16));
  KVCache c32(2), c16(2);
  const at::Tensor l32 = model->forward(ids, c32);
  const at::Tensor l16 = bf16->forward(ids, c16);
  EXPECT_EQ(l16.scalar_type(), at::kBFloat16);
  EXPECT_EQ(c16.keys(0).scalar_type(), at::kBFloat16);
  EXPECT_LT((l16.to(at::kFloat) - l32).abs().max().item<double>(), 0.1 * l32.abs().max().item<double>());
  EXPECT_PIKV_ERROR(DecoderModel::load(write_checkpoint("hf-int8", kTinyConfig, tiny_weights()),
                                       LoadOptions().dtype(at::kChar)),
                    "dtype must be float32, bfloat16, float16 or float64");
}

TEST(LoadOptions, DeviceIsAnAtDeviceAndNamesAreParsedWithAClearError) {
  EXPECT_FALSE(LoadOptions().device().has_value());  // unset: the CPU for a checkpoint, a graph's own
  EXPECT_FALSE(LoadOptions().dtype().has_value());
  EXPECT_EQ(*LoadOptions().device(at::kCUDA).device(), at::Device(at::kCUDA));
  EXPECT_EQ(*LoadOptions().device("cuda:1").device(), at::Device(at::kCUDA, 1));
  EXPECT_EQ(*LoadOptions().device(std::string("cpu")).device(), at::Device(at::kCPU));
  EXPECT_PIKV_ERROR(LoadOptions().device("gpu0"), "LoadOptions::device", "'gpu0' is not a device name");
  // An explicit CPU float32 load is the default one.
  auto model = DecoderModel::load(write_checkpoint("hf-explicit", kTinyConfig, tiny_weights()),
                                  LoadOptions().dtype(at::kFloat).device("cpu"));
  EXPECT_EQ(model->options().device(), at::Device(at::kCPU));
  EXPECT_EQ(model->options().dtype(), at::kFloat);
}

TEST(GraphModels, OptionsTheGraphCannotHonourAreErrors) {
  // clang-format off
  std::map<std::string, std::string> meta = {
      {"pikv.format", "pikv-exported-model"}, {"pikv.version", "1"}, {"num_layers", "1"}, {"num_heads", "2"},
      {"num_kv_heads", "1"}, {"head_dim", "8"}, {"vocab_size", "32"}, {"batch", "1"}, {"capacity", "16"},
      {"dtype", "bfloat16"}, {"device", "cpu"}, {"cache_names", "k0,v0,s0"}};
  // clang-format on
  const GraphModelInfo info = GraphModelInfo::parse(meta, "m.pt2");
  EXPECT_EQ(info.device, at::Device(at::kCPU));
  check_graph_options(info, LoadOptions(), "m.pt2");  // unset: the graph's own
  check_graph_options(info, LoadOptions().dtype(at::kBFloat16).device(at::kCPU).kv_dtype(at::kBFloat16), "m.pt2");
  EXPECT_PIKV_ERROR(check_graph_options(info, LoadOptions().dtype(at::kFloat), "m.pt2"),
                    "'m.pt2' was exported in bfloat16, LoadOptions asks for dtype float32", "--dtype");
  EXPECT_PIKV_ERROR(check_graph_options(info, LoadOptions().device("cuda"), "m.pt2"),
                    "'m.pt2' was exported for cpu, LoadOptions asks for device cuda", "--device cuda");
  EXPECT_PIKV_ERROR(check_graph_options(info, LoadOptions().kv_dtype(at::kHalf), "m.pt2"),
                    "keeps its KV cache in bfloat16", "kv_dtype float16");
  meta["device"] = "cuda:0";  // pikv_export records the device type only
  EXPECT_PIKV_ERROR(GraphModelInfo::parse(meta, "m.pt2"),
                    "'m.pt2': metadata 'device' must be cpu or cuda, got 'cuda:0'");
  meta["device"] = "tpu";
  EXPECT_PIKV_ERROR(GraphModelInfo::parse(meta, "m.pt2"), "got 'tpu'");
}

TEST(Decoder, LongForwardsRunTheMlpOnSlicesOfTheSequence) {
  // 3 x 6000 tokens is above the slicing threshold (16384 tokens per forward); one row alone is not.
  // The MLP is per token, so the sliced forward must give what each row gives unsliced.
  auto model = DecoderModel::load(write_checkpoint("hf-sliced", kTinyConfig, tiny_weights()));
  const at::Tensor ids = (at::arange(3 * 6000, at::kLong) * 7 + 3).remainder(32).view({3, 6000});
  KVCache batch(model->num_layers());
  const at::Tensor all = model->forward(ids, batch);
  for (int64_t r = 0; r < 3; ++r) {
    KVCache one(model->num_layers());
    const at::Tensor row = model->forward(ids.narrow(0, r, 1), one);
    EXPECT_LT((all.narrow(0, r, 1) - row).abs().max().item<double>(), 1e-4 * row.abs().max().item<double>()) << "row " << r;
    // Layer 1's keys depend on layer 0's MLP output.
    EXPECT_TRUE(at::allclose(batch.keys(1).narrow(0, r, 1), one.keys(1), 1e-5, 1e-5)) << "row " << r;
  }
}

TEST(GGUF, ReadsMetadataAndTensors) {
  const std::string dir = test::temp_dir("gguf-good");
  GGUFBuilder b;
  b.kv_str("general.architecture", "llama");
  b.kv_u32("llama.block_count", 7);
  b.kv_f32("llama.rope.freq_base", 5000.0f);
  std::vector<float> values(32);
  for (int i = 0; i < 32; ++i) values[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i);
  b.tensor_f32("w", {8, 4}, values);
  auto f = io::GGUFFile::open(write_file(dir, "good.gguf", b.bytes()));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 7);
  EXPECT_DOUBLE_EQ(f.get_float("llama.rope.freq_base"), 5000.0);
  EXPECT_EQ(f.tensor("w").shape(), (std::vector<int64_t>{4, 8}));
  EXPECT_TRUE(test::tensors_equal(f.load("w"), at::tensor(values).view({4, 8})));
  EXPECT_PIKV_ERROR(f.get_int("general.architecture"), "not an integer");
  EXPECT_PIKV_ERROR(f.get_string("missing.key"), "lacks metadata 'missing.key'");
  EXPECT_PIKV_ERROR(f.load("nope"), "has no tensor 'nope'");
}

namespace {

// A tiny gemma3 GGUF (6 layers: five sliding, one global), every tensor float32. Norm tensors hold
// 1.25 (llama.cpp stores Gemma's 1 + w); `skip` leaves one tensor out, `q8_norm` stores
// blk.0.attn_norm.weight as Q8_0.
std::string gemma3_gguf(const std::string& skip = "", bool q8_norm = false) {
  const uint64_t D = 32, H = 2, Hkv = 1, d = 16, I = 64, V = 64, L = 6;
  GGUFBuilder b;
  b.kv_str("general.architecture", "gemma3");
  b.kv_u32("gemma3.embedding_length", D);
  b.kv_u32("gemma3.block_count", L);
  b.kv_u32("gemma3.feed_forward_length", I);
  b.kv_u32("gemma3.attention.head_count", H);
  b.kv_u32("gemma3.attention.head_count_kv", Hkv);
  b.kv_u32("gemma3.attention.key_length", d);
  b.kv_u32("gemma3.attention.value_length", d);
  b.kv_u32("gemma3.attention.sliding_window", 8);
  b.kv_f32("gemma3.rope.freq_base", 1000000.0f);
  auto add = [&](const std::string& name, std::vector<uint64_t> dims, float value) {
    if (name == skip) return;
    uint64_t n = 1;
    for (uint64_t x : dims) n *= x;
    std::vector<float> v(n);
    for (uint64_t i = 0; i < n; ++i) v[i] = value != 0 ? value : 0.01f * static_cast<float>(i % 17) - 0.08f;
    b.tensor_f32(name, dims, v);
  };
  add("token_embd.weight", {D, V}, 0);
  add("output_norm.weight", {D}, 1.25f);
  for (uint64_t l = 0; l < L; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".";
    if (l == 0 && q8_norm) {
      b.tensor_bytes(g + "attn_norm.weight", {D}, 8, std::string(34, '\0'));
    } else {
      add(g + "attn_norm.weight", {D}, 1.25f);
    }
    for (const char* n : {"post_attention_norm", "ffn_norm", "post_ffw_norm"}) add(g + n + ".weight", {D}, 1.25f);
    add(g + "attn_q_norm.weight", {d}, 1.25f);
    add(g + "attn_k_norm.weight", {d}, 1.25f);
    add(g + "attn_q.weight", {D, H * d}, 0);
    add(g + "attn_k.weight", {D, Hkv * d}, 0);
    add(g + "attn_v.weight", {D, Hkv * d}, 0);
    add(g + "attn_output.weight", {H * d, D}, 0);
    add(g + "ffn_gate.weight", {D, I}, 0);
    add(g + "ffn_up.weight", {D, I}, 0);
    add(g + "ffn_down.weight", {I, D}, 0);
  }
  return b.bytes();
}

}  // namespace

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

TEST(GGUF, BrokenFilesGiveClearErrors) {
  const std::string dir = test::temp_dir("gguf-bad");
  GGUFBuilder b;
  b.kv_str("general.architecture", "llama");
  b.tensor_f32("w", {8, 4}, std::vector<float>(32, 1.0f));
  const std::string good = b.bytes();

  EXPECT_PIKV_ERROR(io::GGUFFile::open(dir + "/missing.gguf"), "cannot open GGUF file");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "tiny.gguf", "GGUF")), "truncated", "24-byte header");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "magic.gguf", "GGML" + good.substr(4))), "not a GGUF file");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "v1.gguf", b.bytes(1))), "version 1");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "cut.gguf", good.substr(0, 60))), "truncated");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "nodata.gguf", good.substr(0, good.size() - 64))), "tensor 'w'",
                    "lies outside");

  GGUFBuilder huge;
  huge.kv_str("general.architecture", std::string(10, 'x'));
  std::string h = huge.bytes();
  const uint64_t claim = 1ull << 40;
  std::memcpy(&h[24 + 8 + 20 + 4], &claim, 8);  // the value string's length
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "huge.gguf", h)), "claims a string");

  GGUFBuilder outside;
  outside.tensor_f32("a", {8}, std::vector<float>(8, 1.0f));
  outside.tensor_raw("b", {8}, 0, 1024);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "outside.gguf", outside.bytes())), "tensor 'b'", "outside");

  GGUFBuilder overlap;
  overlap.tensor_f32("a", {16}, std::vector<float>(16, 1.0f));
  overlap.tensor_raw("b", {8}, 0, 32);
  overlap.tensor_raw("c", {16}, 0, 0);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "overlap.gguf", overlap.bytes())), "overlap");

  GGUFBuilder unknown;
  unknown.tensor_f32("a", {8}, std::vector<float>(8, 1.0f));
  unknown.tensor_raw("q", {32}, 99, 0);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "unknown.gguf", unknown.bytes())), "tensor 'q'",
                    "unknown GGML type 99");

  GGUFBuilder blocks;
  blocks.tensor_f32("a", {64}, std::vector<float>(64, 1.0f));
  blocks.tensor_raw("q", {30}, 8, 0);  // Q8_0 rows must be multiples of 32
  EXPECT_PIKV_ERROR(io::GGUFFile::open(write_file(dir, "blocks.gguf", blocks.bytes())), "tensor 'q'", "Q8_0",
                    "multiple of the block size 32");

  GGUFBuilder unsupported;
  unsupported.tensor_bytes("q", {256}, 11, std::string(110, '\0'));  // Q3_K: a known type we do not decode
  auto f = io::GGUFFile::open(write_file(dir, "q3k.gguf", unsupported.bytes()));
  EXPECT_PIKV_ERROR(f.load("q"), "tensor 'q'", "Q3_K", "cannot dequantise");

  GGUFBuilder bert;
  bert.kv_str("general.architecture", "bert");
  bert.tensor_f32("token_embd.weight", {4, 8}, std::vector<float>(32, 0.0f));
  EXPECT_PIKV_ERROR(DecoderModel::load(write_file(dir, "bert.gguf", bert.bytes())), "architecture 'bert'",
                    "supported: llama");
  GGUFBuilder partial;
  partial.kv_str("general.architecture", "llama");
  partial.tensor_f32("token_embd.weight", {4, 8}, std::vector<float>(32, 0.0f));
  EXPECT_PIKV_ERROR(DecoderModel::load(write_file(dir, "partial.gguf", partial.bytes())),
                    "lacks metadata 'llama.embedding_length'");
}

TEST(SnapKV, OnTheDecoderAndItsErrors) {
  auto model = DecoderModel::load(write_checkpoint("hf-snapkv", kTinyConfig, tiny_weights()));
  const at::Tensor ids = at::arange(24, at::kLong).unsqueeze(0);
  SnapKVPress press(SnapKVOptions().compression_ratio(0.5).window_size(4).kernel_size(3));
  EXPECT_EQ(press.describe(), "snapkv(compression_ratio=0.5, window_size=4, kernel_size=3)");
  KVCache cache(2);
  {
    PressGuard guard(*model, press);
    model->forward(ids, cache);
  }
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_EQ(cache.physical_length(l), 12);
    // The observation window (the last 4 tokens) is always kept.
    EXPECT_TRUE(test::tensors_equal(cache.kept_positions(l).narrow(2, 8, 4),
                                    at::arange(20, 24, at::kLong).expand({1, 1, 4})));
  }
  // Eager attention gives the same choice from the materialised weights.
  KVCache eager(2);
  {
    PressGuard guard(*model, press);
    model->forward(ids, eager, ForwardOptions().eager_attention(true));
  }
  for (int64_t l = 0; l < 2; ++l) EXPECT_TRUE(test::tensors_equal(eager.kept_positions(l), cache.kept_positions(l)));

  KVCache short_cache(2);
  PressGuard guard(*model, press);
  EXPECT_PIKV_ERROR(model->forward(at::arange(4, at::kLong).unsqueeze(0), short_cache), "snapkv",
                    "longer than its window", "window_size=4");
  auto ctx = test::random_context(1, 1, 16, 8);
  ctx.hidden_states = at::zeros({1, 16, 16});
  EXPECT_PIKV_ERROR(press.compress(ctx), "snapkv", "AttentionLayerView");
  EXPECT_PIKV_ERROR(SnapKVPress(SnapKVOptions().window_size(0)), "window_size", "0");
  EXPECT_PIKV_ERROR(SnapKVPress(SnapKVOptions().kernel_size(4)), "kernel_size must be odd", "4");
  EXPECT_PIKV_ERROR(make_press("snapkv", {{"window_size", "x"}}), "window_size must be an integer");
}
