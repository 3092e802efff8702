#pragma once
// The calibration layer's recipe table and every recipe, compiled here once (src/CMakeLists.txt lists
// this file): one file per recipe, registered in this order, the order `pikv calibrate` lists them in.

#include <pikv/calibration/detail/recipes-inl.h>

// Registration order, not alphabetical:
// clang-format off
#include <pikv/calibration/detail/expected_attention_with_stats_recipe-inl.h>
#include <pikv/calibration/detail/duo_attention_recipe-inl.h>
#include <pikv/calibration/detail/qfilter_recipe-inl.h>
#include <pikv/calibration/detail/kvzap_recipe-inl.h>
#include <pikv/calibration/detail/fastkvzip_recipe-inl.h>
#include <pikv/calibration/detail/lukv_recipe-inl.h>
// clang-format on
