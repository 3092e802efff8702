#pragma once
// Composed: presses applied one after another, each on the cache the previous one left. The overall
// ratio is 1 - prod(1 - r_i). Head-wise presses (AdaKV) are refused: a later press cannot score a
// ragged cache.

#include <pikv/core/press.h>

#include <memory>
#include <vector>

namespace pikv {

class ComposedPress : public Press {
 public:
  // Throws pikv::Error for an empty list, a null entry or a head-wise press.
  explicit ComposedPress(std::vector<std::shared_ptr<Press>> presses);

  std::string name() const override { return "composed"; }
  std::string describe() const override;
  double compression_ratio() const override;
  PressRequirements requirements() const override;
  bool should_compress(const AttentionContext& ctx) const override;
  CompressedKV compress(const AttentionContext& ctx) override;

  void on_attach(const HookableModel& model) override;
  void on_detach() override;
  void on_prefill_begin() override;
  void on_prefill_end() override;
  void on_decode_step() override;
  void reset() override;

  const std::vector<std::shared_ptr<Press>>& presses() const { return presses_; }

 private:
  std::vector<std::shared_ptr<Press>> presses_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/composed-inl.h>
#endif
