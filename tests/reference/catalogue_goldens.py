#!/usr/bin/env python3
"""The press catalogue inside real forwards: kvpress's presses hooked into tiny random transformers
checkpoints (Llama without GQA, Llama with GQA, Qwen3 with q/k-norm, Mistral, Phi3), at ratios 0.1,
0.5 and 0.9. For every case it writes what `pikv score` writes (see include/pikv/pipeline/press_record.h):

  CASE.safetensors: input_ids [1, T]; decode_ids [1, s] (decoding presses and head-wise presses);
    layer{l}.kept   int64 [1, Hkv, k] kept positions, ascending (-1 padding for head-wise presses)
    layer{l}.scores float32 [1, Hkv, n] the scorer's scores at its last call (when it has one)
    layer{l}.keys   float32 [1, Hkv, k, d] the stored keys (KeyRerotation and ThinK)
    layer{l}.values float32 [1, Hkv, k, d] the stored values in position order (Merging)
    logits          float32 [1, s, V] logits of the decode tokens (head-wise presses: kvpress masks)
  MODEL/ the checkpoint; manifest.json: cases with the model, file and pikv press name + options.

Usage: catalogue_goldens.py --out DIR
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (AutoModelForCausalLM, DynamicCache, LlamaConfig, MistralConfig, Phi3Config,  # noqa: E402
                          Qwen3Config)

import kvpress  # noqa: E402
from kvpress import (AdaKVPress, BlockPress, CAMPress, ExpectedAttentionStatsPress, CapPress, DuoAttentionPress, KVComposePress, MergingPress, ChunkKVPress, ChunkPress, CompactorPress,  # noqa: E402
                     CompressionRatioDecodingPress, CriticalAdaKVPress, CriticalKVPress, CURPress, DecodingPress,
                     DMSPress,
                     ExpectedAttentionPress, KeyDiffPress, KeyRerotationPress, KnormPress, LagKVPress,
                     LeverageScorePress, NonCausalAttnPress, ObservedAttentionPress, PrefillDecodingPress,
                     PyramidKVPress, RandomPress, SimLayerKVPress, SnapKVPress, StreamingLLMPress, ThinKPress,
                     TOVAPress)

T = 128          # prefill tokens: longer than every window, chunk and lag below
DECODE = 10      # decode tokens after the prefill
VOCAB = 512
RATIOS = [0.1, 0.5, 0.9]


def model_configs():
    small = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    yield "llama_mha", LlamaConfig(**{**small, "num_key_value_heads": 4}, rope_theta=10000.0)
    yield "llama_gqa", LlamaConfig(**small, rope_theta=10000.0,
                                   rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    yield "qwen3_qknorm", Qwen3Config(**small, head_dim=24)
    yield "mistral", MistralConfig(**small, sliding_window=4096)
    phi3 = Phi3Config(**{**small, "num_key_value_heads": 4}, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    phi3.head_dim = 16  # kvpress's CriticalKV reads config.head_dim, which Phi3Config lacks
    yield "phi3", phi3


def randomise(model, seed):
    """Weights large enough that a wrong formula changes what is kept."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def seeded(cls):
    """kvpress's press drawing its random matrices from torch's global generator, seeded seed + layer
    before each layer's score: what pikv's `seed` option does with a generator of its own."""
    class Seeded(cls):
        def __init__(self, *args, seed=0, **kwargs):
            super().__init__(*args, **kwargs)
            object.__setattr__(self, "seed", seed)

        def score(self, module, *args, **kwargs):
            torch.manual_seed(self.seed + module.layer_idx)
            return super().score(module, *args, **kwargs)
    return Seeded


def seeded_compress(press, seed):
    """Seeds torch's global generator with seed + layer before each of the press's compressions."""
    inner = press.compress

    def compress(module, *args, **kwargs):
        torch.manual_seed(seed + module.layer_idx)
        return inner(module, *args, **kwargs)
    press.compress = compress
    return press


def compactor(r, seed, sketch_dimension=48, **kwargs):
    press = CompactorPress(r, sketch_dimension=sketch_dimension, **kwargs)
    press._leverage_press = seeded(LeverageScorePress)(r, sketch_dimension=sketch_dimension, seed=seed)
    return press


PREFILL = {}  # the ids run_case prefills: DuoAttention's on-the-fly "dataset"
STATS = {}    # the current model's statistics folder


def duo_attention(head_compression_ratio, sink_size, recent_size):
    """kvpress's DuoAttention with on-the-fly head scores whose samples are the prefill itself (kvpress
    downloads 50 BookSum chapters; pikv scores the text it compresses): the dataset and tokenizer it
    loads are replaced by that text, repeated 50 times."""
    import pandas
    from transformers import BatchEncoding
    import kvpress.presses.duo_attention_press as duo

    class Dataset:
        def to_pandas(self):
            return pandas.DataFrame({"chapter": ["the prefill"] * 50})

    class Tokenizer:
        @staticmethod
        def from_pretrained(name):
            return lambda text, return_tensors: BatchEncoding({"input_ids": PREFILL["ids"]})

    class Press(DuoAttentionPress):
        def post_init_from_model(self, model):
            duo.load_dataset, duo.AutoTokenizer = (lambda *a, **k: Dataset()), Tokenizer
            duo.cache.clear()
            super().post_init_from_model(model)
            self.sink_size, self.recent_size = sink_size, recent_size
    return Press(head_compression_ratio=head_compression_ratio, on_the_fly_scoring=True)


STATS_SAMPLES, STATS_LEN = 3, 64


def write_query_stats(model, out, mname, samples):
    """kvpress's own recipe (collect_queries, the script behind its hub statistics) on `samples` [S, len]
    instead of BookSum, saved with its loader's save_pretrained: OUT/MODEL_stats/ (+ samples.safetensors,
    for pikv's calibration to run on the same tokens)."""
    from transformers import BatchEncoding
    import kvpress.presses.expected_attention_with_stats as eas
    rows = iter(samples)

    class Dataset:
        def map(self, f):
            return self

        def __getitem__(self, column):
            return ["a sample"] * len(samples)

    class Tokenizer:
        @staticmethod
        def from_pretrained(name):
            return lambda text, return_tensors: BatchEncoding({"input_ids": next(rows).unsqueeze(0)})
    eas.load_dataset, eas.AutoTokenizer = (lambda *a, **k: Dataset()), Tokenizer
    _, mu, cov = eas.collect_queries(model, "calibration", len(samples), 10**9, 4)
    c = model.config
    stats = eas.ExpectedAttentionStats(num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
                                       head_dim=mu.shape[-1], dataset_name="calibration", model_name=mname,
                                       num_samples=len(samples), sample_seq_len=samples.shape[1], n_sink=4)
    stats.query_mean.data, stats.query_cov.data = mu, cov
    folder = out / f"{mname}_stats"
    stats.save_pretrained(folder)
    save_file({"samples": samples.contiguous()}, str(folder / "samples.safetensors"))


def write_duo_pattern(model, out, mname, samples):
    """kvpress's on-the-fly DuoAttention head scores (duo_attention_on_the_fly) over `samples` instead of
    BookSum: OUT/MODEL_duo/ holds them as a pattern in DuoAttention's layout (config.json with a sink
    and window scaled to 128-token prefills, full_attention_heads.tsv written by numpy) and as
    scores.safetensors (for pikv's calibration to compare with)."""
    import numpy as np
    import pandas
    from transformers import BatchEncoding
    import kvpress.presses.duo_attention_press as duo
    rows = iter(samples)

    class Dataset:
        def to_pandas(self):
            return pandas.DataFrame({"chapter": ["a sample"] * len(samples)})

    class Tokenizer:
        @staticmethod
        def from_pretrained(name):
            return lambda text, return_tensors: BatchEncoding({"input_ids": next(rows).unsqueeze(0)})
    duo.load_dataset, duo.AutoTokenizer = (lambda *a, **k: Dataset()), Tokenizer
    duo.cache.clear()
    scores = duo.duo_attention_on_the_fly(model, num_samples=len(samples), q_len=500)
    folder = out / f"{mname}_duo"
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "full_attention_heads.tsv", scores, delimiter="\t")
    (folder / "config.json").write_text(json.dumps({"sink_size": 8, "recent_size": 32}))
    save_file({"scores": torch.as_tensor(scores).float().contiguous(), "samples": samples.contiguous()},
              str(folder / "scores.safetensors"))


def write_qfilters(model, out, mname, samples):
    """The Q-Filters authors' recipe (make_filters.py) on `samples` [S, len], every token a row (they
    draw 3000 rows; these samples have fewer): per layer the post-RoPE queries of every head, the top
    right singular vector v0 of each head's [rows, d] matrix, sign = +1 when most rows project
    positively on it (ties: the summed projection decides), filter = -sign * v0, averaged over each KV
    head's query group. Saved with kvpress's QFilters.save_pretrained: OUT/MODEL_qfilt/ (+
    samples.safetensors)."""
    import sys
    from kvpress.presses.qfilter_press import QFilters
    from kvpress.utils import get_prerope_query_states
    rows = {}

    def hook(module, args, kwargs, output):
        q = get_prerope_query_states(module, kwargs["hidden_states"])  # [1, H, T, d]
        cos, sin = kwargs["position_embeddings"]
        rope = sys.modules[type(module).__module__].apply_rotary_pos_emb
        q = rope(q, q, cos, sin)[0]
        rows.setdefault(module.layer_idx, []).append(q[0].double())
    handles = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in model.model.layers]
    with torch.no_grad():
        for row in samples:
            model(row.unsqueeze(0))
    for h in handles:
        h.remove()
    c = model.config
    H, Hkv = c.num_attention_heads, c.num_key_value_heads
    filters = []
    for layer in range(c.num_hidden_layers):
        X = torch.cat(rows[layer], 1)  # [H, N, d]
        per_head = []
        for h in range(H):
            u, _, vh = torch.linalg.svd(X[h], full_matrices=False)
            share = (u[:, 0] > 0).double().mean().item()
            # An exact tie would follow the SVD's arbitrary sign of v0 (the authors' rule gives -1);
            # both sides orient it by the summed projections instead.
            sign = 1.0 if share > 0.5 else -1.0 if share < 0.5 else (1.0 if (X[h] @ vh[0]).sum() > 0 else -1.0)
            per_head.append(-sign * vh[0])
        f = torch.stack(per_head)
        filters.append(f.view(Hkv, H // Hkv, -1).mean(1))
    filt = torch.stack(filters).float()
    q = QFilters(num_layers=filt.shape[0], num_kv_heads=filt.shape[1], kv_head_dim=filt.shape[2])
    q.q_filters.data = filt
    folder = out / f"{mname}_qfilt"
    q.save_pretrained(folder)
    save_file({"samples": samples.contiguous()}, str(folder / "samples.safetensors"))


def qfilter_press(compression_ratio, folder):
    """kvpress's QFilterPress reading the filters through its own loader from `folder` (it would
    download nthngdy/<model>_qfilt)."""
    from kvpress.presses.qfilter_press import QFilterPress, QFilters

    class Press(QFilterPress):
        def post_init_from_model(self, model):
            self.q_filters = QFilters.from_pretrained(str(folder)).q_filters.to(model.dtype)
    return Press(compression_ratio=compression_ratio)


def write_kvzap_models(model, out, mname):
    """KVzap surrogate models of the shape kvpress downloads (nvidia/KVzap-{linear,mlp}-<model>), with
    nn.Linear's default initialisation from a fixed seed (kvpress's own tests use such mock models), in
    the hub layout: OUT/MODEL_kvzap_linear/ and OUT/MODEL_kvzap_mlp/ (hidden 16). Written by hand:
    KVzapConfig cannot save_pretrained under transformers 5 (its to_dict builds a default config, which
    lacks the required arguments); from_pretrained reads the folder."""
    from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel
    c = model.config
    for kind, hidden in (("linear", None), ("mlp", 16)):
        torch.manual_seed(7)
        config = dict(input_dim=c.hidden_size, output_dim=c.num_key_value_heads, n_modules=c.num_hidden_layers,
                      hidden_dim=hidden)
        m = KVzapModel(KVzapConfig(**config))
        folder = out / f"{mname}_kvzap_{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "kvzap", **config}))
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "model.safetensors"))


def kvzap_press(compression_ratio, folder, kind):
    """kvpress's KVzapPress with its surrogate built from `folder` (config.json + model.safetensors).
    KVzapModel.from_pretrained would do the same but fails under transformers 5 (see write_kvzap_models),
    so the model is constructed from the config and loaded strictly."""
    from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel, KVzapPress
    from safetensors.torch import load_file

    class Press(KVzapPress):
        def post_init_from_model(self, model):
            config = json.loads((folder / "config.json").read_text())
            config.pop("model_type")
            self.kvzap_model = KVzapModel(KVzapConfig(**config))
            self.kvzap_model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return Press(compression_ratio=compression_ratio, model_type=kind)


def duo_attention_pattern(head_compression_ratio, folder):
    """kvpress's DuoAttention loading a head pattern through its own loader, whose downloads are served
    from `folder`."""
    import kvpress.presses.duo_attention_press as duo

    class Response:
        def __init__(self, path):
            self.text = path.read_text()

        def json(self):
            return json.loads(self.text)

    class Press(DuoAttentionPress):
        def post_init_from_model(self, model):
            duo.PATTERNS_DICT[model.config.name_or_path] = "local"
            duo.requests.get = lambda url: Response(folder / url.rsplit("/", 1)[-1])
            duo.cache.clear()
            super().post_init_from_model(model)
    return Press(head_compression_ratio=head_compression_ratio)


def write_fastkvzip_gates(model, out, mname, seed):
    """Random Fast KVzip gates of the released shape (o=16, sink=16), saved as the authors' .pt
    ({"module": [state_dict per layer]}) and converted by scripts/convert_fastkvzip_gates.py into the
    folder pikv reads: OUT/MODEL_fastkvzip.pt and OUT/MODEL_fastkvzip/."""
    from kvpress.presses.fastkvzip_press import FastKVzipGate
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from convert_fastkvzip_gates import to_folder
    c = model.config
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i in range(c.num_hidden_layers):
        gate = FastKVzipGate(i, c.hidden_size, c.num_key_value_heads, c.num_attention_heads // c.num_key_value_heads,
                             torch.float32)
        with torch.no_grad():  # the released init leaves k_base, b at 0 and the norms at 1: spread them
            for name, p in gate.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if name in ("b", "k_base") else 0.2)
                        + (1.0 if "norm" in name else 0.0))
        layers.append(gate.state_dict())
    pt = out / f"{mname}_q{c.num_attention_heads // c.num_key_value_heads}_dim16_sink16.pt"
    torch.save({"module": layers}, pt)
    to_folder(pt, out / f"{mname}_fastkvzip")
    return pt


def fastkvzip_press(compression_ratio, pt, layerwise=False):
    """kvpress's FastKVzipPress loading OUT/MODEL_..._sink16.pt with its own loader (the hub download
    replaced by the local file)."""
    from kvpress.presses import fastkvzip_press as fk
    fk.get_gate_weight = lambda name: (torch.load(pt, weights_only=False)["module"], pt.name)
    fk.print = lambda *args, **kwargs: None  # its loader prints every gate module
    return fk.FastKVzipPress(compression_ratio=compression_ratio, layerwise=layerwise)


def write_lukv_curve(model, out, mname, seed):
    """A budget curve [99, L, Hkv] (float64, as LU-KV's step 2 writes): per-head prune fractions around
    each global ratio, spread so heads and layers differ. OUT/MODEL_lukv.npy."""
    import numpy as np
    c = model.config
    rng = np.random.default_rng(seed)
    ratios = (np.arange(1, 100) / 100.0)[:, None, None]
    spread = rng.normal(0, 0.15, size=(1, c.num_hidden_layers, c.num_key_value_heads))
    curve = np.clip(ratios + spread * np.sqrt(ratios * (1 - ratios)) * 2, 0.0, 0.995)
    np.save(out / f"{mname}_lukv.npy", curve)
    return out / f"{mname}_lukv.npy"


def lukv_with(compression_ratio, curve, scorer, **options):
    """kvpress's LUKVPress around `scorer` with the curve injected (it downloads only Llama-3.1-8B's)."""
    import numpy as np
    from kvpress.presses.lukv_press import LUKVPress
    press = LUKVPress(scorer, compression_ratio=compression_ratio, **options)
    press._budget_curves = np.load(curve)
    return press


def lukv_press(compression_ratio, curve, **ea):
    """LU-KV with kvpress's default scorer, ExpectedAttention(epsilon=0.02)."""
    return lukv_with(compression_ratio, curve, ExpectedAttentionPress(epsilon=2e-2, **ea))


def cases(r):
    """(pikv name, pikv options, kvpress press factory, scorer getter, flags) at ratio r."""
    ea = dict(n_future_positions=64, n_sink=4)
    yield "knorm", {}, lambda: KnormPress(r), "self", ""
    yield "streaming_llm", {"n_sink": "4"}, lambda: StreamingLLMPress(r, n_sink=4), "self", ""
    yield "keydiff", {}, lambda: KeyDiffPress(r), "self", ""
    yield "random", {"seed": "11"}, lambda: RandomPress(r, seed=11), "self", ""
    yield "snapkv", {"window_size": "8"}, lambda: SnapKVPress(r, window_size=8), "self", ""
    yield "pyramidkv", {"window_size": "8", "beta": "4"}, lambda: PyramidKVPress(r, window_size=8, beta=4), "self", ""
    yield "tova", {}, lambda: TOVAPress(r), "self", ""
    yield "observed_attention", {}, lambda: ObservedAttentionPress(r), "self", "eager"
    yield ("expected_attention", {"n_future_positions": "64"}, lambda: ExpectedAttentionPress(r, **ea), "self", "")
    yield ("expected_attention", {"n_future_positions": "64", "use_covariance": "false", "use_vnorm": "false"},
           lambda: ExpectedAttentionPress(r, **ea, use_covariance=False, use_vnorm=False), "self", "")
    yield "lagkv", {"lag_size": "16"}, lambda: LagKVPress(r, lag_size=16), "self", ""
    yield ("lagkv", {"lag_size": "16", "cross_scoring": "true"}, lambda: LagKVPress(r, lag_size=16, cross_scoring=True),
           "self", "")
    # 128 tokens in chunks of 32 (no padding) and of 48 (the last chunk padded by 16).
    yield ("non_causal_attention", {"chunk_size": "32"}, lambda: NonCausalAttnPress(r, chunk_size=32), "self", "")
    yield ("non_causal_attention", {"chunk_size": "48"}, lambda: NonCausalAttnPress(r, chunk_size=48), "self", "")
    # A sketch wider than head_dim (48 > 16, 24) leaves X^T X singular: the jitter path; 8 columns do not.
    yield "leverage", {"seed": "5"}, lambda: seeded(LeverageScorePress)(r, seed=5), "self", ""
    yield ("leverage", {"seed": "6", "sketch_dimension": "8"},
           lambda: seeded(LeverageScorePress)(r, sketch_dimension=8, seed=6), "self", "")
    yield "cur", {}, lambda: CURPress(r), "self", ""
    yield ("cur", {"leverage_type": "kv_avg", "use_local_approximation": "false"},
           lambda: CURPress(r, leverage_type="kv_avg", use_local_approximation=False), "self", "")
    yield ("cur", {"leverage_type": "key", "use_random_leverage": "true", "seed": "3", "local_window_size": "24"},
           lambda: seeded(CURPress)(r, leverage_type="key", use_random_leverage=True, local_window_size=24, seed=3),
           "self", "")
    yield ("compactor", {"seed": "5", "chunk_size": "32"}, lambda: compactor(r, 5, chunk_size=32), "self", "")
    yield ("compactor", {"seed": "7", "chunk_size": "48", "blending": "0.35", "sketch_dimension": "8",
                         "sink_size_start": "4", "sink_size_end": "2"},
           lambda: compactor(r, 7, sketch_dimension=8, chunk_size=48, blending=0.35, sink_size_start=4,
                             sink_size_end=2), "self", "")
    yield "cap", {"n_future_positions": "64"}, lambda: CapPress(r, n_future_positions=64), "self", ""
    yield ("cap", {"n_future_positions": "32", "tau": "2", "n_sink": "2", "epsilon": "0.001"},
           lambda: CapPress(r, n_future_positions=32, tau=2.0, n_sink=2, epsilon=1e-3), "self", "")
    # Merged values: kvpress stores them in top-k order, matched back to positions by their (unchanged) keys.
    yield "merging", {"press": "knorm"}, lambda: MergingPress(KnormPress(r)), "press", "values"
    yield ("merging", {"press": "snapkv", "inner.window_size": "8", "similarity_threshold": "0.1",
                       "merge_fraction": "0.75"},
           lambda: MergingPress(SnapKVPress(r, window_size=8), similarity_threshold=0.1, merge_fraction=0.75),
           "press", "values")
    # KVCompose compresses when its context manager exits, after a second pass over the context ("post").
    yield "kvcompose", {}, lambda: KVComposePress(compression_ratio=r), None, "post"
    yield ("kvcompose", {"agg_task": "mean", "agg_group": "max", "agg_head": "max", "keep_token_lower_bound": "8",
                         "add_mean_across_heads": "false"},
           lambda: KVComposePress(compression_ratio=r, agg_task="mean", agg_group="max", agg_head="max",
                                  keep_token_lower_bound=8, add_mean_across_heads=False), None, "post")
    # Unstructured: kvpress masks per head (and keeps the second copy in its cache): kept sets only.
    yield ("kvcompose", {"structured": "false"}, lambda: KVComposePress(structured=False, compression_ratio=r), None,
           "post masked")
    # Sinks and window scaled to the 128-token prefill (kvpress's on-the-fly defaults: 128 and 256).
    yield ("duo_attention", {"head_compression_ratio": str(r), "on_the_fly_scoring": "true", "sink_size": "8",
                             "recent_size": "32"},
           lambda: duo_attention(r, 8, 32), None, "headwise noratio")
    # Statistics from kvpress's collect_queries (write_query_stats); "@catalogue/" is the goldens folder.
    yield ("expected_attention_with_stats", {"stats_folder": "@catalogue/{model}_stats", "n_future_positions": "64"},
           lambda: ExpectedAttentionStatsPress(r, stats_folder=str(STATS["folder"]), n_future_positions=64), "self", "")
    yield ("expected_attention_with_stats", {"stats_folder": "@catalogue/{model}_stats", "n_future_positions": "64",
                                             "use_covariance": "false", "epsilon": "0.01"},
           lambda: ExpectedAttentionStatsPress(r, stats_folder=str(STATS["folder"]), n_future_positions=64,
                                               use_covariance=False, epsilon=0.01), "self", "")
    yield ("duo_attention", {"head_compression_ratio": str(r), "attention_pattern": "@catalogue/{model}_duo"},
           lambda: duo_attention_pattern(r, STATS["duo"]), None, "headwise noratio")
    # Q-Filters from the authors' recipe on the statistics samples (write_qfilters).
    yield "qfilter", {"filters": "@catalogue/{model}_qfilt"}, lambda: qfilter_press(r, STATS["qfilt"]), "self", ""
    # KVzap with surrogate models of the published shapes (write_kvzap_models), alone and under DMS.
    for kind in ("linear", "mlp"):
        yield ("kvzap", {"kvzap_model": f"@catalogue/{{model}}_kvzap_{kind}"},
               lambda kind=kind: kvzap_press(r, STATS[f"kvzap_{kind}"], kind), "self", "")
    tz = {0.1: -0.3, 0.5: 0.0, 0.9: 0.3}[r]
    yield ("dms", {"press": "kvzap", "inner.kvzap_model": "@catalogue/{model}_kvzap_mlp", "threshold": str(tz),
                   "sliding_window_size": "32"},
           lambda: DMSPress(kvzap_press(0.0, STATS["kvzap_mlp"], "mlp"), threshold=tz, sliding_window_size=32),
           "press", "headwise noratio")
    # Fast KVzip with random gates through the authors' .pt format and our converter (write_fastkvzip_gates);
    # kvpress masks after the prefill ("post masked"), its stacked scores recorded ("gates").
    yield ("fastkvzip", {"gates": "@catalogue/{model}_fastkvzip"}, lambda: fastkvzip_press(r, STATS["fastkvzip"]),
           None, "post masked gates")
    yield ("fastkvzip", {"gates": "@catalogue/{model}_fastkvzip", "layerwise": "true"},
           lambda: fastkvzip_press(r, STATS["fastkvzip"], layerwise=True), None, "post masked gates")
    # LU-KV around its default scorer (expected_attention, epsilon 0.02) and Knorm, with a spread curve
    # (write_lukv_curve): layers free what the curve says, not the ratio ("curve").
    yield ("lukv", {"curve": "@catalogue/{model}_lukv.npy", "inner.n_future_positions": "64"},
           lambda: lukv_press(r, STATS["lukv"], n_future_positions=64), "press", "headwise curve")
    yield ("lukv", {"curve": "@catalogue/{model}_lukv.npy", "press": "knorm", "sink": "2", "window": "8"},
           lambda: lukv_with(r, STATS["lukv"], KnormPress(), sink=2, window=8), "press", "headwise curve")
    # DMS evicting while decoding too: each decode token scored alone by KVzap, the token leaving the
    # 16-token window evicted where it scores below the threshold (10 decode steps after 128 tokens).
    yield ("dms", {"press": "kvzap", "inner.kvzap_model": "@catalogue/{model}_kvzap_mlp", "threshold": str(tz),
                   "sliding_window_size": "16", "decoding": "true"},
           lambda: DMSPress(kvzap_press(0.0, STATS["kvzap_mlp"], "mlp"), threshold=tz, sliding_window_size=16,
                            decoding=True),
           None, "headwise noratio dms_decoding")
    yield "think", {"key_channel_compression_ratio": str(r)}, lambda: ThinKPress(r), None, "keys noratio"
    # The threshold, not a ratio: 0.06 makes every layer lazy, 0.28 some, 0.54 none (random weights
    # spread attention, ~0.3 lands on 4 sinks + the 32 recent tokens of 124).
    lazy = {"lazy_threshold": {0.1: 0.06, 0.5: 0.28, 0.9: 0.54}[r], "n_recent": 32, "n_last": 4, "n_initial": 4}
    yield ("simlayerkv", {k: str(v) for k, v in lazy.items()}, lambda: SimLayerKVPress(**lazy), None, "noratio")
    # DMS: per head, tokens before the last 32 scoring below the threshold go (z-scores: 0 is the mean).
    t = {0.1: -0.8, 0.5: 0.0, 0.9: 0.8}[r]
    yield ("dms", {"press": "non_causal_attention", "inner.chunk_size": "32", "threshold": str(t),
                   "sliding_window_size": "32"},
           lambda: DMSPress(NonCausalAttnPress(chunk_size=32), threshold=t, sliding_window_size=32), "press",
           "headwise noratio")
    yield ("dms", {"press": "keydiff", "threshold": str(-t / 4), "sliding_window_size": "16"},
           lambda: DMSPress(KeyDiffPress(), threshold=-t / 4, sliding_window_size=16), "press", "headwise noratio")
    yield ("adakv", {"press": "expected_attention", "inner.n_future_positions": "64", "inner.epsilon": "0.01"},
           lambda: AdaKVPress(ExpectedAttentionPress(r, **ea, epsilon=1e-2)), "press", "headwise")
    # A window of 8 keeps every window token even at 0.9 (12 per head): SnapKV's window scores tie.
    yield ("adakv", {"press": "snapkv", "inner.window_size": "8", "alpha_safeguard": "0.5"},
           lambda: AdaKVPress(SnapKVPress(r, window_size=8), alpha_safeguard=0.5), "press", "headwise")
    yield ("criticalkv", {"press": "expected_attention", "inner.n_future_positions": "64", "inner.use_vnorm": "false"},
           lambda: CriticalKVPress(ExpectedAttentionPress(r, **ea, use_vnorm=False)), "self", "")
    yield ("criticaladakv", {"press": "snapkv", "inner.window_size": "8"},
           lambda: CriticalAdaKVPress(SnapKVPress(r, window_size=8)), "press", "headwise")
    yield ("key_rerotation", {"press": "knorm"}, lambda: KeyRerotationPress(KnormPress(r)), "press", "keys")
    yield ("chunk", {"press": "knorm", "chunk_length": "48"}, lambda: ChunkPress(KnormPress(r), chunk_length=48), None, "")
    yield ("chunk", {"press": "keydiff", "chunk_length": "32"}, lambda: ChunkPress(KeyDiffPress(r), chunk_length=32),
           None, "")
    yield ("chunkkv", {"press": "keydiff", "chunk_length": "20"}, lambda: ChunkKVPress(KeyDiffPress(r), chunk_length=20),
           "press", "")
    yield "block", {"press": "keydiff", "block_size": "16"}, lambda: BlockPress(KeyDiffPress(r), block_size=16), None, ""
    target = int(T * (1 - r))
    yield ("decoding", {"press": "knorm", "compression_interval": "4", "target_size": str(target)},
           lambda: DecodingPress(KnormPress(), compression_interval=4, target_size=target), "base_press",
           "decode noratio")
    yield ("compression_ratio_decoding", {"press": "keydiff", "compression_interval": "3",
                                          "target_compression_ratio": str(r)},
           lambda: CompressionRatioDecodingPress(KeyDiffPress(), compression_interval=3, target_compression_ratio=r),
           "base_press", "decode noratio")
    # CAM merges before it evicts; its Bernoulli draws come from torch's generator seeded 7 + layer per
    # compression (pikv's seed option), and its merged values are compared too.
    yield ("cam", {"press": "knorm", "compression_interval": "4", "target_size": str(target), "merge_budget": "8",
                   "seed": "7"},
           lambda: seeded_compress(CAMPress(KnormPress(), compression_interval=4, target_size=target, merge_budget=8),
                                   7), "base_press", "decode noratio values")
    yield ("prefill_decoding", {"prefilling_press": "snapkv", "prefilling.window_size": "8",
                                "prefilling.compression_ratio": str(r), "decoding_press": "decoding",
                                "decoding.press": "knorm", "decoding.compression_interval": "5",
                                "decoding.target_size": str(max(1, int(T * (1 - r) * 0.8)))},
           lambda: PrefillDecodingPress(SnapKVPress(r, window_size=8),
                                        DecodingPress(KnormPress(), compression_interval=5,
                                                      target_size=max(1, int(T * (1 - r) * 0.8)))),
           "prefilling_press", "decode noratio")


def scorers_of(press, getter):
    """The scorer objects whose last score() call per layer is recorded."""
    if getter is None:
        return []
    if getter == "self":
        return [press]
    if getter == "prefilling_press":
        return [press.prefilling_press, press.decoding_press.base_press]
    return [getattr(press, getter)]


def kept_rows(full_values, kept_values):
    """Index of every stored row inside `full_values` [B, H, n, d], matched on values (presses but
    Merging never modify values; its rows are matched on keys): [B, H, k], in stored order."""
    eq = (kept_values.unsqueeze(3) == full_values.unsqueeze(2)).all(-1)  # [B, H, k, n]
    if not bool((eq.sum(-1) == 1).all()):
        raise RuntimeError("could not match kvpress's stored values to the full cache")
    return eq.int().argmax(-1)


def stored_positions(full_values, kept_values):
    """Positions of the rows stored after a prefill (head-wise presses store everything)."""
    if kept_values.shape[2] == full_values.shape[2] and torch.equal(kept_values, full_values):
        return torch.arange(full_values.shape[2]).expand(*full_values.shape[:3]).clone()
    return kept_rows(full_values, kept_values)


def headwise_kept(n, masked, H, appended):
    """Stored positions per head from kvpress's masked_key_indices (batch 1; the mask covers the
    prefill's n tokens, `appended` decode tokens follow unmasked), -1 padded."""
    keep = torch.ones(1, H, n + appended, dtype=torch.bool)
    b, h, s = masked
    keep[b, h, s] = False
    lengths = keep.sum(-1)
    out = torch.full((1, H, int(lengths.max())), -1, dtype=torch.int64)
    for hh in range(H):
        pos = keep[0, hh].nonzero().flatten()
        out[0, hh, :len(pos)] = pos
    return out


def run_case(model, eager_model, ids, decode_ids, name, make, getter, flags):
    use = eager_model if "eager" in flags else model
    L = use.config.num_hidden_layers
    PREFILL["ids"] = ids
    press = make()
    recorded = {}
    for scorer in scorers_of(press, getter):
        def score(module, *args, original=scorer.score):
            s = original(module, *args)
            recorded[module.layer_idx] = s.detach().clone().float()
            return s
        scorer.score = score
    full = DynamicCache()
    with torch.no_grad():  # KVCompose switches the model to eager attention: its values round as eager's
        (eager_model if "post" in flags else use)(input_ids=ids, past_key_values=full)
    cache = DynamicCache()
    tensors = {"input_ids": ids}
    logits = []
    known = {}        # layer -> logical positions of the stored rows, in stored order
    state = {"pos": T - 1}
    if "decode" in flags:
        dpress = press.decoding_press if isinstance(press, PrefillDecodingPress) else press
        inner_compress = dpress.compress

        def compress(module, hidden_states, keys, values, attentions, kwargs):
            k2, v2 = inner_compress(module, hidden_states, keys, values, attentions, kwargs)
            layer = module.layer_idx
            m = keys.shape[2] - known[layer].shape[2]
            new = torch.arange(state["pos"] - m + 1, state["pos"] + 1).expand(1, keys.shape[1], m)
            before = torch.cat([known[layer], new], dim=2)
            row = kept_rows(keys, k2) if "values" in flags else kept_rows(values, v2)  # CAM merges values
            known[layer] = before.gather(2, row)
            return k2, v2
        dpress.compress = compress
    if "post" in flags:
        with torch.no_grad():
            with press(use):
                use(input_ids=ids, past_key_values=cache)
            layers = use.model.layers
            if "gates" in flags:  # Fast KVzip's scores of every layer, stacked after the prefill [L, 1, Hkv, T]
                for layer in range(L):
                    tensors[f"layer{layer}.scores"] = press.score_val[layer].float().contiguous()
            for layer in range(L):
                if "masked" in flags:
                    masked = layers[layer].self_attn.masked_key_indices
                    tensors[f"layer{layer}.kept"] = headwise_kept(T, masked, full.layers[layer].values.shape[1], 0)
                    layers[layer].self_attn.masked_key_indices = None
                else:
                    tensors[f"layer{layer}.kept"] = stored_positions(full.layers[layer].values,
                                                                     cache.layers[layer].values).contiguous()
        return tensors
    with torch.no_grad(), press(use):
        use(input_ids=ids, past_key_values=cache)
        for layer in range(L):
            if "values" in flags:
                known[layer] = stored_positions(full.layers[layer].keys, cache.layers[layer].keys)
            else:
                known[layer] = stored_positions(full.layers[layer].values, cache.layers[layer].values)
        if "decode" in flags or "headwise" in flags or "logits" in flags:
            tensors["decode_ids"] = decode_ids
            for t in range(decode_ids.shape[1]):
                pos = torch.tensor([[T + t]])
                state["pos"] = T + t
                out = use(input_ids=decode_ids[:, t:t + 1], past_key_values=cache, position_ids=pos,
                          cache_position=pos[0])
                logits.append(out.logits.float())
    order = {}
    for layer in range(L):
        m = cache.layers[layer].values.shape[2] - known[layer].shape[2]
        new = torch.arange(state["pos"] - m + 1, state["pos"] + 1).expand(1, known[layer].shape[1], m)
        stored = torch.cat([known[layer], new], dim=2)  # logical positions in stored order
        order[layer] = stored.argsort(dim=-1)
        known[layer] = stored.sort(dim=-1).values
    layers = use.model.layers
    for layer in range(L):
        if "headwise" in flags:
            masked = layers[layer].self_attn.masked_key_indices
            tensors[f"layer{layer}.kept"] = headwise_kept(T, masked, full.layers[layer].values.shape[1],
                                                          cache.layers[layer].values.shape[2] - T)
        else:
            tensors[f"layer{layer}.kept"] = known[layer].contiguous()
        if layer in recorded:
            tensors[f"layer{layer}.scores"] = recorded[layer].contiguous()
        if "keys" in flags:
            tensors[f"layer{layer}.keys"] = cache.layers[layer].keys.float().contiguous()
        if "values" in flags:
            v = cache.layers[layer].values.gather(2, order[layer].unsqueeze(-1).expand_as(cache.layers[layer].values))
            tensors[f"layer{layer}.values"] = v.float().contiguous()
    if "headwise" in flags or "logits" in flags:
        tensors["logits"] = torch.cat(logits, 1).contiguous()
    for layer in layers:
        if hasattr(layer.self_attn, "masked_key_indices"):
            layer.self_attn.masked_key_indices = None
    return tensors


def write_cases(out, mname, model, eager, ids, decode_ids, cases, ratios, manifest):
    """Runs every case of cases(r) at every ratio on one model, writes OUT/MODEL__PRESS__I__RATIO.safetensors
    and appends its manifest entry (what the C++ parity tests read)."""
    for r in ratios:
        for ci, (name, options, make, getter, flags) in enumerate(cases(r)):
            if name == "duo_attention" and mname in ("phi3", "qwen3_qknorm"):
                # kvpress's on-the-fly scoring reads q_proj/k_proj (Phi3 fuses them) and skips Qwen3's
                # q/k-norm (its isinstance test looks at the decoder layer); pikv projects as the layer does.
                continue
            opts = {k: v.replace("{model}", mname) for k, v in options.items()}
            if "noratio" not in flags:
                opts["compression_ratio"] = str(r)
            try:
                tensors = run_case(model, eager, ids, decode_ids, name, make, getter, flags)
            except Exception as e:
                raise RuntimeError(f"{mname} {name} {options} at ratio {r}: {e}") from e
            file = f"{mname}__{name}__{ci}__{r}.safetensors"
            save_file(tensors, str(out / file))
            manifest.append({"model": mname, "file": file, "press": name, "options": opts, "ratio": r,
                             "flags": flags.split()})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = []
    for mi, (mname, config) in enumerate(model_configs()):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomise(model, 500 + mi)
        model.save_pretrained(a.out / mname)
        model = AutoModelForCausalLM.from_pretrained(a.out / mname, dtype=torch.float32, attn_implementation="sdpa").eval()
        eager = AutoModelForCausalLM.from_pretrained(a.out / mname, dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(900 + mi)
        # Distinct token ids: repeated tokens would give equal layer-0 keys, a tie.
        perm = torch.randperm(VOCAB, generator=g)
        ids = perm[:T].unsqueeze(0)
        decode_ids = perm[T:T + DECODE].unsqueeze(0)
        write_query_stats(model, a.out, mname, perm[-STATS_SAMPLES * STATS_LEN:].view(STATS_SAMPLES, STATS_LEN))
        STATS["folder"] = a.out / f"{mname}_stats"
        STATS["duo"] = a.out / f"{mname}_duo"
        STATS["qfilt"] = a.out / f"{mname}_qfilt"
        STATS["kvzap_linear"], STATS["kvzap_mlp"] = a.out / f"{mname}_kvzap_linear", a.out / f"{mname}_kvzap_mlp"
        write_kvzap_models(model, a.out, mname)
        write_qfilters(model, a.out, mname, perm[-STATS_SAMPLES * STATS_LEN:].view(STATS_SAMPLES, STATS_LEN))
        STATS["fastkvzip"] = write_fastkvzip_gates(model, a.out, mname, 700 + mi)
        STATS["lukv"] = write_lukv_curve(model, a.out, mname, 800 + mi)
        if mname not in ("phi3", "qwen3_qknorm"):  # see write_cases
            write_duo_pattern(model, a.out, mname, perm[-STATS_SAMPLES * STATS_LEN:].view(STATS_SAMPLES, STATS_LEN))
        write_cases(a.out, mname, model, eager, ids, decode_ids, cases, RATIOS, manifest)
    (a.out / "manifest.json").write_text(json.dumps({"kvpress": kvpress.__version__ if hasattr(kvpress, "__version__")
                                                     else "", "cases": manifest}, indent=1))
    print(f"wrote {len(manifest)} catalogue cases to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
