#pragma once
// Umbrella header: the whole public surface of PiKVPress, layer by layer (docs/architecture.md).
// fmt formatters for the statistics structs are opt-in: <pikv/fmt.h>.

#include <pikv/version.h>

#include <pikv/core/attention.h>
#include <pikv/core/budget.h>
#include <pikv/core/causal_lm.h>
#include <pikv/core/config.h>
#include <pikv/core/error.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/log.h>
#include <pikv/core/options.h>
#include <pikv/core/press.h>
#include <pikv/core/registry.h>
#include <pikv/core/rotary.h>
#include <pikv/core/selection.h>
#include <pikv/core/stats.h>
#include <pikv/core/tensor_checks.h>

#include <pikv/io/files.h>
#include <pikv/io/gguf.h>
#include <pikv/io/npy.h>
#include <pikv/io/safetensors.h>
#include <pikv/io/tokenizer.h>

#include <pikv/ops/cached_attention.h>
#include <pikv/ops/quantized_linear.h>

#include <pikv/models/config.h>
#include <pikv/models/decoder.h>
#include <pikv/models/graph_model.h>
#include <pikv/models/loader.h>
#include <pikv/models/rope.h>
#include <pikv/models/synthetic.h>

// Every press (generated from include/pikv/presses/ by the build, installed beside version.h).
#include <pikv/presses.h>

#include <pikv/routing/experts.h>
#include <pikv/routing/moe_router.h>
#include <pikv/routing/router.h>

#include <pikv/pipeline/chat_template.h>
#include <pikv/pipeline/pipeline.h>
#include <pikv/pipeline/press_record.h>
#include <pikv/pipeline/shared_prefill.h>

#include <pikv/eval/evaluator.h>
#include <pikv/eval/tasks.h>

#include <pikv/calibration/learned_scorers.h>
#include <pikv/calibration/query_statistics.h>
#include <pikv/calibration/recipes.h>
#include <pikv/calibration/router_calibration.h>
#include <pikv/calibration/router_task_loss.h>
