// Files that are not regular files (io/files.h): FIFOs, devices and folders are refused without
// blocking (untrusted input).
#include <pikv/io/files.h>
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"
#include "test_files.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sys/stat.h>
#include <sys/types.h>

using namespace pikv;
using pikv::test::tokenizer_json;
using pikv::test::write_text;

TEST(UntrustedFiles, FifosDevicesAndFoldersAreRefusedWithoutBlocking) {
  const std::string dir = test::temp_dir("untrusted-fifo");
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Opening a FIFO without a writer would block forever; each reader must refuse it at once.
  EXPECT_PIKV_ERROR(io::GGUFFile::open(fifo), "GGUF file", "pipe", "is a FIFO");
  EXPECT_PIKV_ERROR(io::SafetensorsFile::open(fifo), "safetensors file", "is a FIFO");
  EXPECT_PIKV_ERROR(ModelConfig::from_file(fifo), "model config file", "is a FIFO");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(fifo), "tokenizer.json file", "is a FIFO");
  // /dev/zero never ends: it must not be read.
  EXPECT_PIKV_ERROR(ModelConfig::from_file("/dev/zero"), "'/dev/zero' is a character device");
  EXPECT_PIKV_ERROR(io::GGUFFile::open("/dev/zero"), "is a character device");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(dir), "is a folder");
  // A tokenizer folder whose tokenizer_config.json is a FIFO.
  const std::string tok = test::temp_dir("untrusted-fifo-tok");
  write_text(tok + "/tokenizer.json", tokenizer_json(R"({"a": 0})"));
  ASSERT_EQ(::mkfifo((tok + "/tokenizer_config.json").c_str(), 0600), 0);
  EXPECT_PIKV_ERROR(Tokenizer::load(tok), "tokenizer_config.json", "is a FIFO");
  // Size caps.
  write_text(dir + "/big.json", std::string(2000, ' '));
  EXPECT_PIKV_ERROR(io::read_text_file(dir + "/big.json", "test", 1000), "test file", "big.json", "2000 bytes",
                    "more than the 1000");
  EXPECT_EQ(io::read_text_file(dir + "/big.json", "test").size(), 2000u);
}
