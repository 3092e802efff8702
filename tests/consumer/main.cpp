// Links PiKVPress from outside the project (pikv::pikv, or pikv::pikv_header_only) and compresses a
// small cache with a press built by name. Uses no fmt: the library does not force it on consumers.
#include <pikv/pikv.h>

#include <ATen/ATen.h>

#include <iostream>

int main() {
  pikv::AttentionContext ctx;
  ctx.num_layers = 1;
  ctx.keys = at::randn({1, 2, 16, 8});
  ctx.values = at::randn({1, 2, 16, 8});
  pikv::KVCache cache(1);
  cache.append(0, ctx.keys, ctx.values);
  auto press = pikv::make_press("knorm", {{"compression_ratio", "0.75"}});
  pikv::CompressionStats stats;
  (void)pikv::apply_press(*press, ctx, cache, &stats);
  if (cache.physical_length(0) != 4) return 1;
  std::cout << "consumer (PiKVPress " << pikv::version_string << "): kept " << cache.physical_length(0)
            << " of 16 tokens\n"
            << stats << "\n";
  return 0;
}
