#pragma once
// Press: compresses one attention layer's KV cache right after prefill. ScorerPress: the common case
// of a per-token score followed by top-k per KV head. ScorerPressBase and ScorerWrapperBase give a
// press its options struct, name, describe() and compression ratio from one declaration, so a new
// scorer is its options table and its score() (docs/architecture.md, "Adding a press").

#include <ATen/core/Tensor.h>

#include <pikv/core/attention.h>
#include <pikv/core/options.h>
#include <pikv/core/selection.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pikv {

class CausalLM;
class HookableModel;
class KVCache;
class ScorerPress;

// What a press that reads its context again after the prefill (KVzip's context reconstruction) gets
// from the runner, which calls Press::run_context_passes right after the prefill, with the press
// still installed. Token ids, so that presses need no tokenizer of their own.
struct ContextPasses {
  CausalLM* model = nullptr;
  KVCache* cache = nullptr;              // the prefilled context, batch 1
  std::vector<int64_t> context_ids;      // what was prefilled (the chat template's prefix included)
  int64_t prefix_length = 0;             // tokens of the template before the context text
  std::vector<int64_t> suffix_ids;       // the template after a user message (the assistant turn)
  std::function<std::vector<int64_t>(const std::string&)> encode;  // text -> ids, no special tokens
};

// What run_context_passes cost: extra forwards and their tokens.
struct ContextPassesCost {
  int64_t forwards = 0, tokens = 0;
  double ms = 0.0;
};

// What a press needs beyond keys/values; checked before compress() so a press never silently
// falls back (e.g. ObservedAttention without attention weights).
struct PressRequirements {
  bool hidden_states = false;      // the forward's queries: ctx.hidden_states (with the layer view) or ctx.query_states
  bool layer_view = false;         // ctx.layer_view != nullptr
  bool attention_weights = false;  // ctx.attention_weights present (the model must run eager attention)

  // What presses that recompute queries need: the forward's hidden states and the layer view.
  static PressRequirements queries() {
    PressRequirements r;
    r.hidden_states = true;
    r.layer_view = true;
    return r;
  }

  PressRequirements& operator|=(const PressRequirements& o) {
    hidden_states |= o.hidden_states;
    layer_view |= o.layer_view;
    attention_weights |= o.attention_weights;
    return *this;
  }
};

class Press {
 public:
  virtual ~Press() = default;

  // snake_case name as kvpress's class without "Press": "knorm", "streaming_llm", ...
  virtual std::string name() const = 0;
  // "knorm(compression_ratio=0.5)": name and options, for logs and stats.
  virtual std::string describe() const;

  // Configured fraction of tokens removed (Composed: 1 - prod(1 - r_i); PerLayer: the mean).
  virtual double compression_ratio() const = 0;

  virtual PressRequirements requirements() const { return {}; }
  // True when the press gives heads different budgets (AdaKV and friends).
  virtual bool head_wise() const { return false; }
  // True when the press compresses during decoding (Decoding, CompressionRatioDecoding): runners must
  // then not truncate back into the cache (the pipeline snapshots it per question instead).
  virtual bool acts_during_decoding() const { return false; }
  // The scorer whose per-token scores this press ranks by (itself for scorers, the inner press for
  // AdaKV and friends), or nullptr. `pikv score` records its scores.
  virtual const ScorerPress* scorer() const { return nullptr; }
  // The scorer acting on this forward (PrefillDecoding: the prefill press's or the decoding press's).
  virtual const ScorerPress* scorer_for(const AttentionContext& ctx) const { return scorer(); }
  // What the press did to a layer beyond the kept tokens, for records (`pikv score`): ThinK returns
  // {"pruned_channels": int64 [B, Hkv, p]}. Called with the context compress() saw.
  virtual std::map<std::string, at::Tensor> layer_record(const AttentionContext& ctx) const { return {}; }

  // Whether this press acts on this forward. Default: prefill only (decoding presses override). Runners
  // may ask before gathering the layer's cache: decide from ctx.is_prefill, the layer and the press's
  // own state, not from ctx.keys / values / attention_weights (they may be undefined).
  virtual bool should_compress(const AttentionContext& ctx) const { return ctx.is_prefill; }

  // Compresses one layer: ctx.keys/values [B, Hkv, n, d] -> kept KV. Must not modify ctx's tensors.
  [[nodiscard]] virtual CompressedKV compress(const AttentionContext& ctx) = 0;

  // Lifecycle, called by HookableModel / PressGuard (a runner without one calls them itself):
  //   on_attach(model)   when installed; may reject the model (e.g. a PerLayer ratio list of the wrong
  //                      length) by throwing pikv::Error
  //   on_prefill_begin() before the first layer of a prefill (a new request)
  //   on_prefill_end()   after the last layer of a prefill
  //   on_decode_step()   after every forward that is not a prefill
  //   on_detach()        when removed
  virtual void on_attach(const HookableModel& model) {}
  virtual void on_detach() {}
  virtual void on_prefill_begin() {}
  virtual void on_prefill_end() {}
  virtual void on_decode_step() {}
  // Drops state carried between calls (decoding buffers, router statistics).
  virtual void reset() {}

  // Presses that compress by running more forwards after the prefill (KVzip) return true; the runner
  // then calls run_context_passes after the prefill (pikv::Pipeline and SharedPrefill do). A press
  // that needs them throws from its next forward when a runner skipped them.
  virtual bool needs_context_passes() const { return false; }
  virtual ContextPassesCost run_context_passes(const ContextPasses& passes) { return {}; }
  // The per-token scores the last run_context_passes selected by (KVzip, FastKVzip; for records and
  // tests): float32 [L, B, Hkv, n], higher = keep; undefined for presses that select otherwise.
  virtual at::Tensor context_pass_scores() const { return {}; }

  // Presses that select for a known question (Finch): the runner prefills the context followed by the
  // question's tokens (tokenized apart from the context), tells the press how many there are, and asks
  // nothing after the compressed cache but the answer turn (pikv::Pipeline does this for every question).
  virtual bool wants_question() const { return false; }
  virtual void set_question_tokens(int64_t tokens) {}

  // Throws pikv::Error naming this press and the missing input when ctx lacks what requirements()
  // asks for, and validates ctx's shapes.
  void check_context(const AttentionContext& ctx) const;

  // Thread ownership. An installed press belongs to the thread that installed it: presses keep
  // per-request state (decoding presses count steps, moe_router its statistics, ThinK its pruned
  // channels, wrappers their inner presses' state), so one instance installed by two threads at once
  // would mix two requests. HookableModel::exchange_press claims the press for the calling thread (one
  // thread may install it several times, e.g. on two models) and throws pikv::Error when another
  // thread holds it; the claim ends when the thread's last installation is removed.
  void claim_for_this_thread();
  void release_from_this_thread();

 private:
  struct ThreadClaim {
    std::atomic<uint64_t> owner{0};  // the owning thread's token (0: free)
    int64_t depth = 0;               // installations by the owner (only the owner touches it)
    ThreadClaim() = default;
    ThreadClaim(const ThreadClaim&) {}  // a copy is a new, unclaimed instance
    ThreadClaim& operator=(const ThreadClaim&) { return *this; }
  };
  ThreadClaim claim_;
};

class ScorerPress : public Press {
 public:
  const ScorerPress* scorer() const override { return this; }
  // Sets the ratio (kvpress's compression_ratio setter, used by wrappers): the ratio lives in one
  // place, the press's options (or the press it wraps). Throws for a ratio outside [0, 1).
  virtual void set_compression_ratio(double ratio) = 0;

  // Importance of every cached token, higher = keep: ctx.keys [B, Hkv, n, d] -> [B, Hkv, n].
  // `ratio` is the ratio this call compresses at (StreamingLLM's scores depend on it; PerLayer passes
  // each layer's own ratio). Pure: no state changes (a press that learns from its selections uses the
  // two hooks below).
  [[nodiscard]] virtual at::Tensor score(const AttentionContext& ctx, double ratio) const = 0;

  // The scores a selection is about to use, and the selection made from them. Whoever selects tokens
  // by this press's scores (compress_at, AdaKV, Chunk, ...) calls both, in this order; a press that
  // learns from its own selections (moe_router's cache-aware router and statistics) overrides them.
  // kept: int64 [B, Hkv, k], ascending; -1 pads heads that kept fewer (head-wise selections).
  virtual at::Tensor score_for_selection(const AttentionContext& ctx, double ratio) { return score(ctx, ratio); }
  virtual void observe_selection(const AttentionContext& ctx, double ratio, const at::Tensor& kept) {}

  // Keeps the top n_kept(n, compression_ratio()) tokens of every KV head.
  CompressedKV compress(const AttentionContext& ctx) override { return compress_at(ctx, compression_ratio()); }

  // Same at an explicit ratio in [0, 1]; ratio 0 returns the inputs unchanged (no copy).
  [[nodiscard]] CompressedKV compress_at(const AttentionContext& ctx, double ratio);
};

// The compression_ratio row every scorer's options table starts with.
#define PIKV_RATIO_OPTION(X) \
  X(double, compression_ratio, 0, ::pikv::rule::ratio(), "fraction of tokens removed, in [0, 1)")

// A scorer configured by an options struct (PIKV_OPTIONS) with a compression_ratio field: name from
// Derived::kName, describe() from the options, the ratio stored once (in the options).
template <class Derived, class OptionsT>
class ScorerPressBase : public ScorerPress {
 public:
  using Options = OptionsT;

  // Presses inherit it (`using ScorerPressBase::ScorerPressBase;`): options checked, defaults by default.
  explicit ScorerPressBase(const Options& options = {}) : options_(options) { validate_options(options_); }

  std::string name() const override { return Derived::kName; }
  std::string describe() const override { return name() + "(" + describe_options(options_) + ")"; }
  double compression_ratio() const override { return options_.compression_ratio(); }
  void set_compression_ratio(double ratio) override {
    Options next = options_;
    next.compression_ratio(ratio);
    validate_options(next);
    options_ = next;
  }
  const Options& options() const { return options_; }

 protected:
  Options options_;
};

// An options struct with no options (wrappers that are configured by their inner press alone).
#define PIKV_NO_OPTIONS(X)
struct NoOptions {
  PIKV_OPTIONS(NoOptions, PIKV_NO_OPTIONS)
};

namespace detail {
// Throws "<who> needs a scorer press to wrap, got none" for a null press.
void check_wrapped(const ScorerPress* press, const char* who);

// What every press that wraps a scorer shares: the inner press (which holds the compression ratio),
// and forwarding of requirements and lifecycle to it.
template <class Base>
class Wrapping : public Base {
 public:
  double compression_ratio() const override { return press_->compression_ratio(); }
  PressRequirements requirements() const override { return press_->requirements(); }
  void on_attach(const HookableModel& model) override { press_->on_attach(model); }
  void on_detach() override { press_->on_detach(); }
  void on_prefill_begin() override { press_->on_prefill_begin(); }
  void on_prefill_end() override { press_->on_prefill_end(); }
  void on_decode_step() override { press_->on_decode_step(); }
  void reset() override { press_->reset(); }

  const ScorerPress& press() const { return *press_; }
  const std::shared_ptr<ScorerPress>& inner() const { return press_; }

 protected:
  Wrapping(std::shared_ptr<ScorerPress> press, const char* who) : press_(std::move(press)) {
    check_wrapped(press_.get(), who);
  }
  std::shared_ptr<ScorerPress> press_;
};
}  // namespace detail

// A press that selects by an inner scorer's scores in its own way (AdaKV, Chunk, KeyRerotation, ...).
// Ratio 0 keeps everything without calling the wrapper; otherwise the context is checked and
// compress_wrapped runs at the inner press's ratio.
class ScorerWrapper : public detail::Wrapping<Press> {
 public:
  const ScorerPress* scorer() const override { return press_.get(); }
  CompressedKV compress(const AttentionContext& ctx) final;

 protected:
  ScorerWrapper(std::shared_ptr<ScorerPress> press, const char* who) : Wrapping(std::move(press), who) {}
  virtual CompressedKV compress_wrapped(const AttentionContext& ctx, double ratio) = 0;
  // The inner press's scores for a selection, and the selection made (see ScorerPress's hooks).
  at::Tensor inner_scores(const AttentionContext& ctx, double ratio) { return press_->score_for_selection(ctx, ratio); }
  void inner_selected(const AttentionContext& ctx, double ratio, const at::Tensor& kept) {
    press_->observe_selection(ctx, ratio, kept);
  }
};

// A scorer whose scores are computed from an inner scorer's (CriticalKV): still a ScorerPress, so it
// can be wrapped in turn; its ratio is the inner press's.
class ScoringWrapper : public detail::Wrapping<ScorerPress> {
 public:
  void set_compression_ratio(double ratio) override { press_->set_compression_ratio(ratio); }

 protected:
  ScoringWrapper(std::shared_ptr<ScorerPress> press, const char* who) : Wrapping(std::move(press), who) {}
};

// "adakv(press=knorm(compression_ratio=0.5), alpha_safeguard=0.2)"
std::string describe_wrapper(const std::string& name, const Press& inner, const std::string& options);

// A wrapper with an options struct: name from Derived::kName, describe() from the inner press and the
// options. Base is ScorerWrapper or ScoringWrapper.
template <class Derived, class OptionsT, class Base = ScorerWrapper>
class ScorerWrapperBase : public Base {
 public:
  using Options = OptionsT;

  // Wrappers inherit it (`using ScorerWrapperBase::ScorerWrapperBase;`).
  explicit ScorerWrapperBase(std::shared_ptr<ScorerPress> press, const Options& options = {})
      : Base(std::move(press), Derived::kName), options_(options) {
    validate_options(options_);
  }

  std::string name() const override { return Derived::kName; }
  std::string describe() const override { return describe_wrapper(name(), *this->press_, describe_options(options_)); }
  const Options& options() const { return options_; }

 protected:
  Options options_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/press-inl.h>
#endif
