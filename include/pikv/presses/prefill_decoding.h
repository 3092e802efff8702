#pragma once
// PrefillDecodingPress: one press for the prefill, one decoding press (decoding.h) afterwards.

#include <pikv/presses/decoding.h>

#include <memory>

namespace pikv {

class PrefillDecodingPress : public Press {
 public:
  static constexpr const char* kName = "prefill_decoding";
  // Either press may be null (that phase is not compressed), not both.
  PrefillDecodingPress(std::shared_ptr<Press> prefilling_press, std::shared_ptr<DecodingPress> decoding_press);
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override;
  PressRequirements requirements() const override;
  bool head_wise() const override { return prefill_ && prefill_->head_wise(); }
  bool acts_during_decoding() const override { return decoding_ != nullptr; }
  const ScorerPress* scorer() const override;
  const ScorerPress* scorer_for(const AttentionContext& ctx) const override;
  std::map<std::string, at::Tensor> layer_record(const AttentionContext& ctx) const override;
  bool should_compress(const AttentionContext& ctx) const override;
  CompressedKV compress(const AttentionContext& ctx) override;
  void on_attach(const HookableModel& model) override;
  void on_detach() override;
  void on_prefill_begin() override;
  void on_prefill_end() override;
  void reset() override;

 private:
  std::shared_ptr<Press> prefill_;
  std::shared_ptr<DecodingPress> decoding_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/prefill_decoding-inl.h>
#endif
