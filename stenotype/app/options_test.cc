#include "app/options.h"

#include <gtest/gtest.h>
#include <linux/if_packet.h>

#include <string>
#include <vector>

#include "capture/filter.h"

namespace steno {
namespace {

Status Parse(std::vector<std::string> args, Options* o) {
  args.insert(args.begin(), "stenotype");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  return ParseOptions(static_cast<int>(argv.size()), argv.data(), o);
}

TEST(Options, Defaults) {
  Options o;
  ASSERT_TRUE(Parse({"--dir=/d"}, &o).ok());
  EXPECT_EQ(o.iface, "eth0");
  EXPECT_EQ(o.threads, 1);
  EXPECT_EQ(o.count, -1);
  EXPECT_EQ(o.blocks, 2048);
  EXPECT_EQ(o.blocksize_kb, 1024);
  EXPECT_EQ(o.aiops, 128);
  EXPECT_EQ(o.io_engine, kDefaultIoEngine);
  EXPECT_EQ(o.filesize_mb, 4096);
  EXPECT_EQ(o.fileage_sec, 60);
  EXPECT_EQ(o.blockage_sec, 10);
  EXPECT_EQ(o.seccomp, "kill");
  uint32_t fanout = 0;
  ASSERT_TRUE(ParseFanout(o.fanout_type, &fanout).ok());
  EXPECT_EQ(fanout, static_cast<uint32_t>(PACKET_FANOUT_LB | PACKET_FANOUT_FLAG_ROLLOVER));
}

TEST(Options, Forms) {
  Options o;
  ASSERT_TRUE(Parse({"--dir", "/d", "--iface=em1", "--threads", "4", "-v", "-vv", "-q", "--no_index",
                     "--no_promisc=true", "--fanout_type=hash,defrag"},
                    &o)
                  .ok());
  EXPECT_EQ(o.dir, "/d");
  EXPECT_EQ(o.iface, "em1");
  EXPECT_EQ(o.threads, 4);
  EXPECT_EQ(o.verbosity, 2);
  EXPECT_TRUE(o.no_index);
  EXPECT_TRUE(o.no_promisc);
  EXPECT_EQ(o.fanout_type, "hash,defrag");
  ASSERT_TRUE(Parse({"--dir=/d", "--io_engine=uring"}, &o).ok());
  EXPECT_EQ(o.io_engine, IoEngine::kUring);
  ASSERT_TRUE(Parse({"--dir=/d", "--io_engine", "aio"}, &o).ok());
  EXPECT_EQ(o.io_engine, IoEngine::kAio);
}

TEST(Options, Errors) {
  const struct {
    std::vector<std::string> args;
    const char* message;
  } cases[] = {
      {{}, "--dir is required"},
      {{"--dir=/d", "--bogus=1"}, "unknown flag --bogus"},
      {{"--dir=/d", "--threads=0"}, "--threads: 0 out of range [1, 64]"},
      {{"--dir=/d", "--threads=two"}, "--threads: 'two' is not a number"},
      {{"--dir=/d", "--filesize_mb=4097"}, "--filesize_mb: 4097 out of range [1, 4096]"},
      {{"--dir=/d", "--blocksize_kb=6"}, "--blocksize_kb must be a multiple of 4 (the page size)"},
      {{"--dir=/d", "--filesize_mb=1", "--blocksize_kb=2048"}, "--filesize_mb must hold at least one block of --blocksize_kb"},
      {{"--dir=/d", "--filter=00", "--filter_expr=tcp"}, "--filter and --filter_expr cannot be used together"},
      {{"--dir=/d", "--seccomp=maybe"}, "--seccomp must be none, trace or kill"},
      {{"--dir=/d", "--io_engine=posix"}, "--io_engine must be aio or uring"},
      {{"--dir=/d", "--pcap_in=x.pcap", "--threads=2"}, "--pcap_in imports with one thread; drop --threads"},
      {{"--dir=/d", "--preallocate_file_mb=100", "--filesize_mb=10"}, "--preallocate_file_mb cannot exceed --filesize_mb"},
      {{"--dir=/d", "--count"}, "--count needs a value"},
      {{"--dir=/d", "--no_index=yes"}, "--no_index takes no value (or true/false)"},
      {{"--dir=/d", "stray"}, "unexpected argument 'stray'"},
  };
  for (const auto& c : cases) {
    Options o;
    Status s = Parse(c.args, &o);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.message(), c.message);
  }
}

}  // namespace
}  // namespace steno
