#pragma once
// HookableModel: a model with a press slot per thread, used by its central attention function.
// PressGuard: the RAII way to install a press for a scope.
//
// Threads. The press slot and the compression statistics belong to the calling thread: several
// threads may share one model (its weights are read-only during a forward), each with its own cache,
// request and PressGuard, and none sees another's press. A press *instance* holds per-request state
// (decoding presses count steps, moe_router and ThinK keep what they computed), so installing one
// instance from a second thread while the first still has it installed is refused with pikv::Error:
// give each thread its own instance (see README "Threads").
//
// A model's layers call HookableModel::attention() (the one hook point): it appends the forward's
// keys/values to the cache, attends through pikv::attend(), and runs the installed press on the layer.
// A runner that owns its loop instead calls apply_press() itself, and the lifecycle hooks
// (begin_prefill / end_prefill / decode_step) around each forward.

#include <pikv/core/attention.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/press.h>
#include <pikv/core/stats.h>

#include <cstdint>

namespace pikv {

// Runs `press` on one layer if it wants this forward and applies the result to `cache`, recording
// what happened in `stats` (may be null). The single code path shared by HookableModel and custom
// runners that call presses themselves. Returns true when the layer was compressed.
// ctx.keys/values must be the layer's full cache as stored in `cache` (dense layer).
bool apply_press(Press& press, const AttentionContext& ctx, KVCache& cache,
                 CompressionStats* stats = nullptr);

// One layer's attention call, as a model hands it to HookableModel::attention().
struct LayerAttention {
  const AttentionLayerView* layer = nullptr;  // the layer (presses read its structure through it)
  at::Tensor hidden_states;  // [B, T, Dm], the attention block's input (after the input norm)
  at::Tensor queries;        // [B, H, T, d], post-RoPE
  at::Tensor query_states;   // [B, H, T, d], pre-RoPE (presses reuse them), or undefined
  at::Tensor keys, values;   // [B, Hkv, T, d], this forward's new tokens (keys post-RoPE)
  at::Tensor query_index;    // int64 [T]: logical indices of this forward's tokens
  at::Tensor key_padding;    // bool [B, N] by logical index (false = left padding), or undefined
  AttentionParams params;    // scale, sliding window, soft-capping, weights
  bool pressable = true;     // false: no press ever sees this layer (Gemma 3's sliding-window layers)

  // The call of a rotary layer: queries and keys rotated by the layer's RoPE at `positions` (int64 [T]
  // or [B, T]). hidden_states [B, T, Dm]; query_states [B, H, T, d] pre-RoPE; keys/values
  // [B, Hkv, T, d] (keys pre-RoPE); query_index int64 [T].
  static LayerAttention rotary(const AttentionLayerView& layer, const at::Tensor& hidden_states,
                               const at::Tensor& query_states, const at::Tensor& keys, const at::Tensor& values,
                               const at::Tensor& positions, const at::Tensor& query_index);
};

class HookableModel {
 public:
  virtual ~HookableModel() = default;

  virtual int64_t num_layers() const = 0;

  HookableModel();
  HookableModel(const HookableModel&) = delete;
  HookableModel& operator=(const HookableModel&) = delete;

  // The press installed on this model by the calling thread, or nullptr.
  Press* press() const;

  // Installs `press` (nullptr removes it) and returns the previous press. The new press's on_attach
  // runs first (it may reject the model: then nothing changes), then the replaced press's on_detach.
  // Throws pikv::Error when another thread has `press` installed (on any model): an instance serves
  // one thread at a time (Press::claim_for_this_thread). Prefer PressGuard, which restores the
  // previous press automatically.
  [[nodiscard]] Press* exchange_press(Press* press);

  // What the calling thread's press did during its last prefill on this model (cleared when a prefill
  // begins).
  const CompressionStats& compression_stats() const;

  // The central attention function: appends call.keys/values to `cache` (layer call.layer->layer_index()),
  // attends over the layer's whole cache, then runs the installed press on it (pressable layers).
  // Called inside the forward's ForwardScope on (this model, cache), which knows whether the forward is
  // a prefill and where it starts; throws pikv::Error naming the fix when there is none. Attention
  // weights are materialised when call.params asks for them or the installed press needs them.
  // Returns the attention output [B, H, T, d].
  AttentionResult attention(const LayerAttention& call, KVCache& cache);

  // The dtype the central attention function stores keys/values in (undefined: as computed). A
  // float16 / bfloat16 cache under float32 compute halves the cache's bytes and what each decoded
  // token reads; presses score a float32 copy of the layer, attention reads it as stored.
  void set_kv_dtype(std::optional<at::ScalarType> dtype);
  std::optional<at::ScalarType> kv_dtype() const { return kv_dtype_; }

 protected:

  // Called by the model's central attention function once per layer, after attention consumed the
  // full cache of this forward. Returns true when the layer was compressed.
  bool run_press(const AttentionContext& ctx, KVCache& cache);
  // The same, building the context from what the attention function has at hand.
  // hidden_states [B, q, Dm]; keys/values [B, Hkv, n, d] (the layer's whole cache); weights
  // [B, H, q, n] or undefined when attention weights were not materialised; query_states [B, H, q, d]
  // pre-RoPE, or undefined; key_positions: AttentionContext::key_positions.
  bool run_press(const AttentionLayerView& layer, const at::Tensor& hidden_states, const at::Tensor& keys,
                 const at::Tensor& values, const at::Tensor& weights, bool is_prefill, int64_t position_offset,
                 KVCache& cache, const at::Tensor& query_states = at::Tensor(),
                 const at::Tensor& key_positions = at::Tensor());

  // Forward lifecycle, forwarded to the installed press: begin_prefill before the first layer of a
  // prefill (also clears compression_stats()), end_prefill after its last layer, decode_step after
  // every other forward.
  void begin_prefill();
  void end_prefill();
  void decode_step();

 private:
  friend class ForwardScope;
  struct Slot {
    Press* press = nullptr;
    CompressionStats stats;
    bool warned_append = false;  // the uncompressed-append note was given for this installation
  };
  // The calling thread's slot for this model (created on first use).
  Slot& slot() const;
  std::optional<at::ScalarType> kv_dtype_;
  uint64_t id_;  // unique per model for the process's lifetime: a slot never outlives into another model
};

// What the pikv::cached_attention operator (an exported or scripted graph's attention) needs to know
// about the forward running on this thread: the model whose press and statistics apply, the cache the
// graph's buffers belong to, and what this forward is.
struct ForwardBinding {
  HookableModel* model = nullptr;
  KVCache* cache = nullptr;
  bool is_prefill = false;      // the forward belongs to the prefill (its first chunk or a later one)
  int64_t position_offset = 0;  // logical index of the forward's first token
  bool press_waits = false;     // a prefill chunk that the next forward continues: no press runs yet
};

// The binding of the innermost ForwardScope on this thread, or nullptr.
[[nodiscard]] const ForwardBinding* current_forward();

// Brackets one forward of a model: begins a prefill when the cache is empty, binds model and cache on
// this thread (HookableModel::attention and the pikv::cached_attention operator read the forward's
// state from it), and on scope exit ends the prefill (or counts a decode step) and restores the
// previous binding; when an exception leaves the scope, no lifecycle step runs. Every forward runs
// inside one: our decoder's, the synthetic model's, an exported graph's, a hand-written module's.
// Scopes nest per thread, so several models (and threads) in one process never see each other's presses.
class ForwardScope {
 public:
  // prefill_continues: ForwardOptions::prefill_continues of this forward (the prefill goes on in the
  // next forward on this cache). Throws pikv::Error for it on a forward after the prefill ended.
  ForwardScope(HookableModel& model, KVCache& cache, bool prefill_continues = false);
  ~ForwardScope();
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;

  const ForwardBinding& binding() const { return binding_; }

 private:
  ForwardBinding binding_;
  const ForwardBinding* previous_;
  int exceptions_;
};

// Binds one press to one model for a scope, restoring the previously installed press on destruction,
// also when an exception leaves the scope. Guards nest like a stack. Non-copyable, non-movable: the
// scope is the binding. The press and the model must outlive the guard.
class PressGuard {
 public:
  PressGuard(HookableModel& model, Press& press);
  ~PressGuard();

  PressGuard(const PressGuard&) = delete;
  PressGuard& operator=(const PressGuard&) = delete;
  PressGuard(PressGuard&&) = delete;
  PressGuard& operator=(PressGuard&&) = delete;

  Press& press() const { return *installed_; }

 private:
  HookableModel& model_;
  Press* installed_;
  Press* previous_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/hookable_model-inl.h>
#endif
