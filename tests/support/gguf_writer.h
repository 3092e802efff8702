#pragma once
// GGUF files written by hand: a writer whose metadata and tensors tests change after the fact (Gguf),
// a plain builder (GGUFBuilder), and the small llama / gemma3 / vocabulary files built with them.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <fstream>
#include <string>
#include <vector>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <cmath>

namespace pikv::test {

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

inline std::vector<float> values(size_t n, uint64_t seed, float scale = 0.2f, float offset = 0.0f) {
  at::Tensor t = test::randn({static_cast<int64_t>(n)}, seed) * scale + offset;
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + n);
}

// A valid two-block llama GGUF: D=32, H=2, Hkv=1, d=16, I=64, V=64, float32 tensors.
inline Gguf tiny_llama() {
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

// A byte-level GGUF vocabulary: a, b, ab, <|end|> (control).
inline Gguf gguf_vocab() {
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

// A tiny gemma3 GGUF (6 layers: five sliding, one global), every tensor float32. Norm tensors hold
// 1.25 (llama.cpp stores Gemma's 1 + w); `skip` leaves one tensor out, `q8_norm` stores
// blk.0.attn_norm.weight as Q8_0.
inline std::string gemma3_gguf(const std::string& skip = "", bool q8_norm = false) {
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

}  // namespace pikv::test
