// The decoder (models/decoder.h): input checks, presses, bf16, long forwards, load options.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"

#include <cstring>
#include <fstream>

using namespace pikv;
using pikv::test::kTinyConfig;
using pikv::test::tiny_weights;
using pikv::test::write_checkpoint;

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
