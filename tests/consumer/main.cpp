// Links pikv::pikv from outside the project and compresses a small cache.
#include <pikv/pikv.h>

#include <ATen/ATen.h>

int main() {
  pikv::AttentionContext ctx;
  ctx.num_layers = 1;
  ctx.keys = at::randn({1, 2, 16, 8});
  ctx.values = at::randn({1, 2, 16, 8});
  pikv::KVCache cache(1);
  cache.append(0, ctx.keys, ctx.values);
  auto press = pikv::make_press("knorm", {{"compression_ratio", "0.75"}});
  pikv::apply_press(*press, ctx, cache);
  if (cache.physical_length(0) != 4) return 1;
  fmt::print("consumer: kept {} of 16 tokens, {} bytes\n", cache.physical_length(0), cache.bytes());
  return 0;
}
