#pragma once
// Checkpoint readers: a model's configuration and its named weights (Hugging Face names, float
// tensors on the CPU), from a Hugging Face folder or a GGUF file. DecoderModel::load uses them.

#include <pikv/models/config.h>
#include <pikv/models/decoder.h>

#include <string>

namespace pikv {

struct Checkpoint {
  ModelConfig config;
  WeightMap weights;
};

// config.json + model.safetensors, or shards listed by model.safetensors.index.json.
Checkpoint read_hf_checkpoint(const std::string& dir);

// A llama-architecture GGUF file (general.architecture = llama): hyper-parameters from llama.* keys,
// tensors dequantised to float32 and renamed to Hugging Face names, attn_q/attn_k un-permuted from
// the interleaved RoPE layout back to half-split (as transformers' GGUF loader does).
Checkpoint read_gguf_checkpoint(const std::string& path);

// True for an existing folder / regular file.
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);

}  // namespace pikv
