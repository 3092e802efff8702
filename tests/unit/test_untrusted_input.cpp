// Model files, tokenizers and configs are untrusted input. Every test here writes a real malformed
// file (GGUF, safetensors, config.json, tokenizer.json) and checks that loading it ends in a
// pikv::Error that names the file, the field or tensor and the bad value: never a crash, an
// unbounded allocation, a raw LibTorch error or a silently wrong result.
#include <pikv/io/files.h>
#include <pikv/pikv.h>

#include "helpers.h"

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

namespace {

// ---- a GGUF writer: metadata and tensors that tests can change after the fact ----

enum : uint32_t { kU8 = 0, kI32 = 5, kU32 = 4, kF32 = 6, kStr = 8, kArr = 9, kU64 = 10, kI64 = 11 };
enum : uint32_t { kTF32 = 0, kTF16 = 1, kTQ8_0 = 8 };

class Gguf {
 public:
  void u32(const std::string& key, uint32_t v) { put(key, kU32, pod(v)); }
  void u64(const std::string& key, uint64_t v) { put(key, kU64, pod(v)); }
  void i64(const std::string& key, int64_t v) { put(key, kI64, pod(v)); }
  void f32(const std::string& key, float v) { put(key, kF32, pod(v)); }
  void str(const std::string& key, const std::string& v) { put(key, kStr, string(v)); }
  void strs(const std::string& key, const std::vector<std::string>& v) {
    std::string b = pod(uint32_t{kStr}) + pod(uint64_t{v.size()});
    for (const auto& s : v) b += string(s);
    put(key, kArr, b);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string b = pod(uint32_t{kI32}) + pod(uint64_t{v.size()});
    for (int32_t x : v) b += pod(x);
    put(key, kArr, b);
  }
  void f32s(const std::string& key, const std::vector<float>& v) {
    std::string b = pod(uint32_t{kF32}) + pod(uint64_t{v.size()});
    for (float x : v) b += pod(x);
    put(key, kArr, b);
  }
  // A second entry for `key` (a broken file: keys must be unique).
  void duplicate_u32(const std::string& key, uint32_t v) { kv_.emplace_back(key, pod(uint32_t{kU32}) + pod(v)); }
  void erase(const std::string& key) {
    for (size_t i = 0; i < kv_.size(); ++i)
      if (kv_[i].first == key) kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;  // fastest first
    uint32_t type;
    std::string data;
  };
  void tensor_f32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& values) {
    std::string data(values.size() * 4, '\0');
    std::memcpy(&data[0], values.data(), data.size());
    tensors_.push_back({name, std::move(dims), kTF32, std::move(data)});
  }
  void tensor_raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type, std::string data) {
    tensors_.push_back({name, std::move(dims), type, std::move(data)});
  }
  Tensor& tensor(const std::string& name) {
    for (auto& t : tensors_)
      if (t.name == name) return t;
    throw std::runtime_error("test GGUF has no tensor " + name);
  }
  void drop(const std::string& name) {
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (tensors_[i].name == name) tensors_.erase(tensors_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // The header (everything before the first padding) as written.
  std::string header() const {
    std::string h = "GGUF" + pod(uint32_t{3}) + pod(uint64_t{tensors_.size()}) + pod(uint64_t{kv_.size()});
    for (const auto& [key, value] : kv_) h += string(key) + value;
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      h += string(t.name) + pod(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) h += pod(d);
      h += pod(t.type) + pod(offset);
      offset += pad(t.data.size());
    }
    return h;
  }
  // The file: tensors back to back, each padded to `align_` (the writer's alignment, whatever the
  // metadata claims).
  std::string bytes() const {
    std::string file = header();
    file.resize(pad(file.size()), '\0');
    for (const auto& t : tensors_) {
      file += t.data;
      file.resize(pad(file.size()), '\0');
    }
    return file;
  }
  std::string write(const std::string& dir, const std::string& name) const {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes();
    return path;
  }

 private:
  template <typename T>
  static std::string pod(T v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static std::string string(const std::string& s) { return pod(uint64_t{s.size()}) + s; }
  static size_t pad(size_t n) { return (n + 31) / 32 * 32; }
  void put(const std::string& key, uint32_t type, const std::string& value) {
    for (auto& kv : kv_)
      if (kv.first == key) {
        kv.second = pod(type) + value;
        return;
      }
    kv_.emplace_back(key, pod(type) + value);
  }
  std::vector<std::pair<std::string, std::string>> kv_;
  std::vector<Tensor> tensors_;
};

std::vector<float> values(size_t n, uint64_t seed, float scale = 0.2f, float offset = 0.0f) {
  at::Tensor t = test::randn({static_cast<int64_t>(n)}, seed) * scale + offset;
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + n);
}

// A valid two-block llama GGUF: D=32, H=2, Hkv=1, d=16, I=64, V=64, float32 tensors.
Gguf tiny_llama() {
  Gguf g;
  g.str("general.architecture", "llama");
  g.u32("llama.embedding_length", 32);
  g.u32("llama.block_count", 2);
  g.u32("llama.feed_forward_length", 64);
  g.u32("llama.attention.head_count", 2);
  g.u32("llama.attention.head_count_kv", 1);
  g.u32("llama.context_length", 64);
  g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.f32("llama.rope.freq_base", 10000.0f);
  uint64_t seed = 1;
  g.tensor_f32("token_embd.weight", {32, 64}, values(32 * 64, seed++));
  g.tensor_f32("output_norm.weight", {32}, values(32, seed++, 0.1f, 1.0f));
  g.tensor_f32("output.weight", {32, 64}, values(32 * 64, seed++));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    g.tensor_f32(p + "attn_norm.weight", {32}, values(32, seed++, 0.1f, 1.0f));
    g.tensor_f32(p + "attn_q.weight", {32, 32}, values(32 * 32, seed++));
    g.tensor_f32(p + "attn_k.weight", {32, 16}, values(32 * 16, seed++));
    g.tensor_f32(p + "attn_v.weight", {32, 16}, values(32 * 16, seed++));
    g.tensor_f32(p + "attn_output.weight", {32, 32}, values(32 * 32, seed++));
    g.tensor_f32(p + "ffn_norm.weight", {32}, values(32, seed++, 0.1f, 1.0f));
    g.tensor_f32(p + "ffn_gate.weight", {32, 64}, values(32 * 64, seed++));
    g.tensor_f32(p + "ffn_up.weight", {32, 64}, values(32 * 64, seed++));
    g.tensor_f32(p + "ffn_down.weight", {64, 32}, values(64 * 32, seed++));
  }
  return g;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// ---- a tiny Hugging Face checkpoint ----

const char* kConfig = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "rms_norm_eps": 1e-6, "tie_word_embeddings": true})";

WeightMap hf_weights() {
  WeightMap w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) { w[name] = 0.3 * test::randn(shape, seed++); };
  add("model.embed_tokens.weight", {32, 16});
  add("model.norm.weight", {16});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {16});
    add(p + "post_attention_layernorm.weight", {16});
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

std::string hf_checkpoint(const std::string& name, const std::string& config, const WeightMap& weights) {
  const std::string dir = test::temp_dir(name);
  write_text(dir + "/config.json", config);
  io::save_safetensors(dir + "/model.safetensors", {weights.begin(), weights.end()});
  return dir;
}

// kConfig with `key` set to the raw JSON `value` (added when absent).
std::string config_with(const std::string& key, const std::string& value) {
  std::string c = kConfig;
  const std::string quoted = "\"" + key + "\": ";
  const size_t at = c.find(quoted);
  if (at == std::string::npos) return c.substr(0, c.size() - 1) + ", " + quoted + value + "}";
  const size_t begin = at + quoted.size();
  const size_t end = c.find_first_of(",}", begin);
  return c.substr(0, begin) + value + c.substr(end);
}

// ---- tokenizer.json ----

std::string tokenizer_json(const std::string& vocab, const std::string& merges = "[]",
                           const std::string& added = "[]") {
  return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" + merges +
         R"(}, "added_tokens": )" + added +
         R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "decoder": {"type": "ByteLevel"}})";
}

std::string write_tokenizer(const std::string& dir, const std::string& name, const std::string& json) {
  const std::string path = dir + "/" + name;
  write_text(path, json);
  return path;
}

// A byte-level GGUF vocabulary: a, b, ab, <|end|> (control).
Gguf gguf_vocab() {
  Gguf g;
  g.str("general.architecture", "llama");
  g.str("tokenizer.ggml.model", "gpt2");
  g.str("tokenizer.ggml.pre", "gpt2");
  g.strs("tokenizer.ggml.tokens", {"a", "b", "ab", "<|end|>"});
  g.i32s("tokenizer.ggml.token_type", {1, 1, 1, 3});
  g.strs("tokenizer.ggml.merges", {"a b"});
  g.u32("tokenizer.ggml.eos_token_id", 3);
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// GGUF: sizes, alignment, layout
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedGGUF, ByteCountsThatWouldWrapAreRefused) {
  const std::string dir = test::temp_dir("untrusted-wrap");
  // 2^32 x 2^30 float32 values: 2^62 elements, 2^64 bytes, which wraps to 0 in 64 bits and would pass
  // a bounds check against the data size.
  Gguf g;
  g.tensor_raw("w", {1ull << 32, 1ull << 30}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "wrap.gguf")), "wrap.gguf", "tensor 'w'", "[4294967296, 1073741824]",
                    "4611686018427387904 elements");
  // Four dimensions whose product overflows 64 bits.
  Gguf h;
  h.tensor_raw("x", {1ull << 40, 1ull << 40, 1, 1}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(h.write(dir, "overflow.gguf")), "tensor 'x'", "impossible dimension 1099511627776");
  // A zero dimension makes the byte count 0, but the strides of the others would still overflow.
  Gguf z;
  z.tensor_raw("z", {0, 1ull << 30, 1ull << 30}, kTF32, "");
  EXPECT_PIKV_ERROR(io::GGUFFile::open(z.write(dir, "zero.gguf")), "tensor 'z'", "[0, 1073741824, 1073741824]",
                    "spans 1152921504606846976 elements, more than any file can hold");
  const std::string st = dir + "/zero.safetensors";
  {
    const std::string header = R"({"z": {"dtype": "F32", "shape": [0, 4611686018427387904, 4611686018427387904],
                                         "data_offsets": [0, 0]}})";
    std::ofstream out(st, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
  }
  EXPECT_PIKV_ERROR(io::SafetensorsFile::open(st), "zero.safetensors", "tensor 'z'",
                    "shape [0,4611686018427387904,4611686018427387904] overflows");
  // checked arithmetic helpers
  uint64_t u = 0;
  EXPECT_FALSE(io::checked_mul(uint64_t{1} << 32, uint64_t{1} << 32, &u));
  EXPECT_FALSE(io::checked_add(std::numeric_limits<uint64_t>::max(), uint64_t{1}, &u));
  EXPECT_TRUE(io::checked_mul(uint64_t{3}, uint64_t{5}, &u));
  EXPECT_EQ(u, 15u);
  int64_t i = 0;
  EXPECT_FALSE(io::checked_mul(int64_t{1} << 62, int64_t{4}, &i));
}

TEST(UntrustedGGUF, AlignmentThatWouldShiftReadsIsRefused) {
  const std::string dir = test::temp_dir("untrusted-align");
  Gguf g;
  g.str("general.architecture", "llama");
  g.tensor_f32("a", {8}, values(8, 1));  // 32 bytes: no padding after it
  g.tensor_f32("b", {8}, values(8, 2));
  auto good = io::GGUFFile::open(g.write(dir, "good.gguf"));
  EXPECT_TRUE(test::tensors_equal(good.load("b"), at::tensor(values(8, 2))));
  // Both tensors are 32 bytes (no padding between them), so only where the data section starts
  // differs. The header length is varied until the claimed alignment moves the start.
  for (uint32_t wrong : {1u, 16u}) {
    g.u32("general.alignment", wrong);
    auto shifted = [&] {
      const size_t h = g.header().size();
      return (h + wrong - 1) / wrong * wrong != (h + 31) / 32 * 32;
    };
    for (int n = 0; n < 64 && !shifted(); ++n) g.str("general.name", std::string(static_cast<size_t>(n), 'x'));
    ASSERT_TRUE(shifted());
    const std::string claim = fmt::format("general.alignment {} allows", wrong);
    EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "align.gguf")), "align.gguf", claim.c_str(),
                      "follow the last tensor 'b'");
  }
  // A tensor that is not a multiple of 32 bytes: with alignment 1 the next one would start right after it.
  Gguf p;
  p.tensor_f32("a", {5}, values(5, 3));
  p.tensor_f32("b", {8}, values(8, 4));
  p.u32("general.alignment", 1);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(p.write(dir, "gap.gguf")), "tensor 'b'", "starts at data offset 32",
                    "end at 20", "general.alignment 1");
  for (int64_t bad : {0ll, 3ll, -32ll, 1ll << 40}) {
    Gguf q;
    q.i64("general.alignment", bad);
    q.tensor_f32("a", {8}, values(8, 5));
    const std::string expected = fmt::format("general.alignment {} is not a power of two", bad);
    EXPECT_PIKV_ERROR(io::GGUFFile::open(q.write(dir, "pow2.gguf")), expected.c_str());
  }
}

TEST(UntrustedGGUF, DuplicateMetadataKeysAreRefused) {
  const std::string dir = test::temp_dir("untrusted-dupkey");
  Gguf g = tiny_llama();
  g.duplicate_u32("llama.block_count", 1);
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "dup.gguf")), "dup.gguf", "metadata key 'llama.block_count' appears twice");
}

TEST(UntrustedGGUF, RetypedTensorsBreakTheLayout) {
  const std::string dir = test::temp_dir("untrusted-retype");
  Gguf g = tiny_llama();
  g.tensor("blk.0.attn_q.weight").type = kTQ8_0;  // same bytes, now read as Q8_0 (fewer bytes)
  EXPECT_PIKV_ERROR(io::GGUFFile::open(g.write(dir, "retyped.gguf")), "tensor 'blk.0.attn_k.weight'",
                    "a tensor type, dimension or the alignment is wrong");
  Gguf d = tiny_llama();
  d.tensor("blk.1.ffn_up.weight").dims = {32, 32};  // half the rows: the bytes no longer add up
  EXPECT_PIKV_ERROR(io::GGUFFile::open(d.write(dir, "dims.gguf")), "blk.1.ffn_down.weight", "starts at data offset");
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

// ---------------------------------------------------------------------------------------------------
// Hugging Face checkpoints: config.json and safetensors
// ---------------------------------------------------------------------------------------------------

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
// Files that are not regular files
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedFiles, FifosDevicesAndFoldersAreRefusedWithoutBlocking) {
  const std::string dir = test::temp_dir("untrusted-fifo");
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Opening a FIFO without a writer would block forever; each reader must refuse it at once.
  EXPECT_PIKV_ERROR(io::GGUFFile::open(fifo), "GGUF file", "pipe", "is a FIFO");
  EXPECT_PIKV_ERROR(io::SafetensorsFile::open(fifo), "safetensors file", "is a FIFO");
  EXPECT_PIKV_ERROR(ModelConfig::from_file(fifo), "model config file", "is a FIFO");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(fifo), "tokenizer.json file", "is a FIFO");
  // /dev/zero never ends: it must not be read.
  EXPECT_PIKV_ERROR(ModelConfig::from_file("/dev/zero"), "'/dev/zero' is a character device");
  EXPECT_PIKV_ERROR(io::GGUFFile::open("/dev/zero"), "is a character device");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(dir), "is a folder");
  // A tokenizer folder whose tokenizer_config.json is a FIFO.
  const std::string tok = test::temp_dir("untrusted-fifo-tok");
  write_text(tok + "/tokenizer.json", tokenizer_json(R"({"a": 0})"));
  ASSERT_EQ(::mkfifo((tok + "/tokenizer_config.json").c_str(), 0600), 0);
  EXPECT_PIKV_ERROR(Tokenizer::load(tok), "tokenizer_config.json", "is a FIFO");
  // Size caps.
  write_text(dir + "/big.json", std::string(2000, ' '));
  EXPECT_PIKV_ERROR(io::read_text_file(dir + "/big.json", "test", 1000), "test file", "big.json", "2000 bytes",
                    "more than the 1000");
  EXPECT_EQ(io::read_text_file(dir + "/big.json", "test").size(), 2000u);
}

// ---------------------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------------------

TEST(UntrustedTokenizer, JsonVocabularyIdsMustBeInRangeAndUnique) {
  const std::string dir = test::temp_dir("untrusted-tok-ids");
  auto load = [&](const std::string& json) { return Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", json)); };
  EXPECT_NO_THROW(load(tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a b"])")));
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": -1})")), "tokenizer.json", "model.vocab['a'] is -1",
                    "not a token id in [0, 16777216)");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 9223372036854775807})")), "model.vocab['a'] is 9223372036854775807");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 9223372036854775808})")), "model.vocab['a'] is 9223372036854775808");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 18446744073709551616})")), "model.vocab['a'] is 1.8446744073709552e+19");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 1000000000000})")), "model.vocab['a'] is 1000000000000");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 1.5})")), "model.vocab['a'] is 1.5");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0, "b": 0})")), "model.vocab gives id 0 to both 'a' and 'b'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0, "b": 100000})")), "token id 100000",
                    "without a token (2 tokens in all)");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"id": -1, "content": "<s>", "special": true}])")),
                    "added_tokens[0].id is -1");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"id": 1, "content": "", "special": true}])")),
                    "added_tokens[0] (id 1) has an empty 'content'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]",
                                        R"([{"id": 1, "content": "<s>"}, {"id": 1, "content": "</s>"}])")),
                    "added_tokens gives id 1 to both '<s>' and '</s>'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"content": "<s>"}])")),
                    "added_tokens[0] must be an object with an integer 'id'");
  EXPECT_PIKV_ERROR(load(R"({"model": {"type": "BPE", "vocab": [1, 2]}})"), "model.vocab must be an object");
}

TEST(UntrustedTokenizer, JsonMergesMustBePairsOfKnownTokens) {
  const std::string dir = test::temp_dir("untrusted-tok-merges");
  auto load = [&](const std::string& json) { return Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", json)); };
  const std::string vocab = R"({"a": 0, "b": 1, "ab": 2})";
  EXPECT_NO_THROW(load(tokenizer_json(vocab, R"([["a", "b"]])")));
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, "[[]]")), "model.merges[0] is [], not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["a"]])")), "model.merges[0] is [\"a\"], not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["a", 3]])")), "not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["", "b"]])")), "a pair with an empty token");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["ab"])")), "model.merges[0] is \"ab\", not two tokens separated");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["a "])")), "not two tokens separated by a space");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["a b", "a c"])")), "model.merges[1] merges 'c'",
                    "not in the vocabulary");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"({"a": "b"})")), "model.merges must be a list");
}

TEST(UntrustedTokenizer, EmptyTokensNeverMatchSoEncodingTerminates) {
  const std::string dir = test::temp_dir("untrusted-tok-empty");
  // An empty vocabulary entry (tokenizer.json) is kept for its id but never matched.
  auto t = Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", tokenizer_json(R"({"a": 0, "b": 1, "": 2})")));
  EXPECT_EQ(t->encode("abba"), (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_FALSE(t->token_id("").has_value());
  // A GGUF vocabulary whose control token is the empty string: encode must still terminate.
  Gguf g = gguf_vocab();
  g.strs("tokenizer.ggml.tokens", {"a", "b", "ab", ""});
  auto gt = Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "empty.gguf")));
  EXPECT_EQ(gt->encode("abab"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(gt->decode({2, 3, 0}), "aba");
}

TEST(UntrustedTokenizer, GgufVocabularyIsChecked) {
  const std::string dir = test::temp_dir("untrusted-tok-gguf");
  auto load = [&](const Gguf& g) { return Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "vocab.gguf"))); };
  EXPECT_EQ(load(gguf_vocab())->encode("ab<|end|>"), (std::vector<int64_t>{2, 3}));
  Gguf m = gguf_vocab();
  m.strs("tokenizer.ggml.merges", {"a b", "ab"});
  EXPECT_PIKV_ERROR(load(m), "vocab.gguf", "tokenizer.ggml.merges[1] is 'ab', not two tokens separated by a space");
  m.strs("tokenizer.ggml.merges", {"a x"});
  EXPECT_PIKV_ERROR(load(m), "tokenizer.ggml.merges[0] 'a x' merges 'x', which is not in the vocabulary");
  Gguf e = gguf_vocab();
  e.u32("tokenizer.ggml.eos_token_id", 4);
  EXPECT_PIKV_ERROR(load(e), "tokenizer.ggml.eos_token_id is 4, outside the vocabulary [0, 4)");
  Gguf b = gguf_vocab();
  b.i64("tokenizer.ggml.bos_token_id", -1);
  EXPECT_PIKV_ERROR(load(b), "tokenizer.ggml.bos_token_id is -1");
  Gguf s = gguf_vocab();
  s.str("tokenizer.ggml.model", "llama");
  s.f32s("tokenizer.ggml.scores", {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f});
  EXPECT_PIKV_ERROR(load(s), "tokenizer.ggml.scores[2] (token 'ab') is nan, not finite");
  Gguf t = gguf_vocab();
  t.i32s("tokenizer.ggml.token_type", {1, 1});
  EXPECT_PIKV_ERROR(load(t), "token_type must have one entry per token");
}

TEST(UntrustedTokenizer, MalformedByteTokensDecodeAsText) {
  const std::string dir = test::temp_dir("untrusted-tok-bytes");
  Gguf g;
  g.str("tokenizer.ggml.model", "llama");
  g.strs("tokenizer.ggml.tokens", {"<unk>", "<0xZZ>", "<0x41>", "\xE2\x96\x81" "a"});
  g.u32("tokenizer.ggml.unknown_token_id", 0);
  auto t = Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "spm.gguf")));
  EXPECT_EQ(t->decode({1, 2}), "<0xZZ>A");
}

TEST(UntrustedTokenizer, ConfigFieldsOfTheWrongTypeAreNamed) {
  const std::string dir = test::temp_dir("untrusted-tok-config");
  const std::string tj = write_tokenizer(dir, "tokenizer.json", tokenizer_json(R"({"a": 0, "<s>": 1})"));
  write_text(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "tokenizer_config.json",
                    "add_bos_token must be true or false, got \"yes\"");
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": 5})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "bos_token must be a token string");
  write_text(dir + "/tokenizer_config.json", R"({"chat_template": [3]})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "chat_template[0] must be an object");
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": {"content": "<s>"}, "add_bos_token": true})");
  auto t = Tokenizer::from_json(tj, dir + "/tokenizer_config.json");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_TRUE(t->add_bos());
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
