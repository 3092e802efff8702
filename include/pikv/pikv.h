#pragma once
// Umbrella header: the whole public surface of PiKVPress.

#include <pikv/core/attention.h>
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/log.h>
#include <pikv/core/press.h>
#include <pikv/core/stats.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/gguf.h>
#include <pikv/io/safetensors.h>
#include <pikv/models/config.h>
#include <pikv/models/decoder.h>
#include <pikv/models/loader.h>
#include <pikv/models/rope.h>
#include <pikv/models/synthetic.h>
#include <pikv/presses/composed.h>
#include <pikv/presses/keydiff.h>
#include <pikv/presses/knorm.h>
#include <pikv/presses/per_layer.h>
#include <pikv/presses/random.h>
#include <pikv/presses/registry.h>
#include <pikv/presses/streaming_llm.h>
