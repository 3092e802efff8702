// Graph models (models/graph_model.h): options the graph cannot honour.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cstring>
#include <fstream>

using namespace pikv;

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
