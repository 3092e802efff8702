#pragma once
// Checkpoint readers: a model's configuration and its named weights (Hugging Face names, float
// tensors on the CPU), from a Hugging Face folder or a GGUF file. DecoderModel::load uses them.
//
// Model files are untrusted input: the readers validate the configuration (sizes within
// config_limits, finite positive epsilons and RoPE parameters), check that every tensor the decoder
// needs is present with the shape the configuration implies (before any tensor data is read), that
// GGUF metadata agrees with the tensors (head counts, block_count, norm tensors of a float type), and
// refuse weights holding NaN or infinity. Every failure is a pikv::Error naming the file, the field or
// tensor and the bad value; LibTorch errors raised while loading are rethrown as pikv::Error.

#include <pikv/models/config.h>
#include <pikv/models/decoder.h>

#include <string>
#include <vector>

namespace pikv {

struct Checkpoint {
  ModelConfig config;
  WeightMap weights;
  QuantizedWeightMap quantized;  // GGUF matrices kept in blocks (CheckpointOptions::keep_quantized)
};

struct CheckpointOptions {
  // Refuse weights that hold NaN or +-infinity (one pass over the loaded weights). The environment
  // variable PIKV_SKIP_FINITE_CHECK=1 turns it off for readers called with the default options.
  bool check_finite = true;
  // GGUF: keep matrices of a type ops::QuantizedMatrix runs (Q8_0, Q4_0, Q4_1, Q5_*, Q4_K, Q6_K) in their
  // blocks, in Checkpoint::quantized, instead of dequantising them into Checkpoint::weights.
  bool keep_quantized = false;
};

// config.json + model.safetensors, or shards listed by model.safetensors.index.json.
Checkpoint read_hf_checkpoint(const std::string& dir, const CheckpointOptions& options = {});

// A GGUF file of the llama or gemma3 architecture (general.architecture; one entry each in the table of
// detail/gguf_architectures.h): hyper-parameters from the <arch>.* keys, tensors dequantised to float32
// (or kept in blocks) and renamed to Hugging Face names.
// llama: attn_q/attn_k un-permuted from the interleaved RoPE layout back to half-split (as
// transformers' GGUF loader does; kept blocks are reordered by whole rows, which is the same
// permutation); Llama-3 style RoPE frequency factors (rope_freqs.weight) become per-frequency divisors
// of the inverse frequencies. gemma3: the family's fixed parts (sliding pattern 5:1, local RoPE base
// 10000, GELU, q/k norms) as llama.cpp assumes them, and the stored norm weights 1 + w back to w.
Checkpoint read_gguf_checkpoint(const std::string& path, const CheckpointOptions& options = {});

// A tensor DecoderModel takes: Hugging Face name and the shape the config implies.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor DecoderModel takes for `config`. GPT-2 checkpoints name their tensors with or without
// the "transformer." prefix; `gpt2_prefix` says which.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config, const std::string& gpt2_prefix = "");

// Throws pikv::Error (naming `source`, the tensor and the problem) unless `weights` holds every
// expected tensor with its shape and a floating dtype, and, with options.check_finite, only finite
// values in its floating tensors.
void check_weights(const ModelConfig& config, const WeightMap& weights, const std::string& source,
                   const CheckpointOptions& options = {});

// True for an existing folder / regular file.
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/loader-inl.h>
#endif
