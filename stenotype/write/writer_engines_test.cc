// The BlockWriter over each write engine (--io_engine): the same
// rotation and the same handling of a full disk, whichever kernel
// interface carries the writes. The writer's own cases, on the default
// engine, are in block_writer_test.cc.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "format/block_builder.h"
#include "testutil/fault_file_system.h"
#include "testutil/temp_dir.h"
#include "write/block_writer.h"

namespace steno {
namespace {

constexpr size_t kBlockSize = 8192;

struct FreeAligned {
  void operator()(uint8_t* p) const { free(p); }
};

// FullBlock is a ring block with udp frames filling more than half of it
// (so it is written whole), stamped sec.
std::unique_ptr<uint8_t, FreeAligned> FullBlock(uint32_t sec) {
  void* mem = nullptr;
  EXPECT_EQ(posix_memalign(&mem, kDirectIOAlign, kBlockSize), 0);
  auto* p = static_cast<uint8_t*>(mem);
  memset(p, 0, kBlockSize);
  BlockBuilder b(p, kBlockSize, 1);
  std::vector<uint8_t> frame(1000, 0);
  frame[12] = 0x08;
  frame[14] = 0x45;
  frame[23] = 17;
  for (uint32_t i = 0; i < 6; ++i) b.Add(frame.data(), frame.size(), frame.size(), sec, i);
  b.Finish();
  return std::unique_ptr<uint8_t, FreeAligned>(p);
}

// Visible lists the finished (not hidden) files of dir with their sizes.
std::vector<std::pair<std::string, off_t>> Visible(const std::string& dir) {
  std::vector<std::pair<std::string, off_t>> out;
  DIR* d = opendir(dir.c_str());
  while (struct dirent* e = d != nullptr ? readdir(d) : nullptr) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    std::string path = dir + "/" + e->d_name;
    out.push_back({e->d_name, stat(path.c_str(), &st) == 0 ? st.st_size : -1});
  }
  if (d != nullptr) closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

class WriterOnEngine : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    ASSERT_EQ(mkdir(pkt_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(idx_.c_str(), 0755), 0);
  }
  WriterOptions Options() {
    WriterOptions o;
    o.packet_dir = pkt_;
    o.block_size = kBlockSize;
    o.max_inflight = 3;
    o.file_size = 4 * kBlockSize;
    o.fs = &fs_;
    return o;
  }
  // Run appends n full blocks, reaping as the capture thread does, closes
  // the writer and returns how many release callbacks ran.
  int Run(BlockWriter* w, int n) {
    EXPECT_TRUE(w->Start().ok());
    std::vector<std::unique_ptr<uint8_t, FreeAligned>> blocks;
    int released = 0;
    for (int i = 0; i < n; ++i) {
      blocks.push_back(FullBlock(2000 + i));
      (void)w->Append(blocks.back().get(), 1700000000000000 + i, [&released] { ++released; });
      w->Reap(false);
    }
    EXPECT_TRUE(w->Close().ok());
    return released;
  }

  TempDir tmp_;
  std::string pkt_ = tmp_.path() + "/PKT0", idx_ = tmp_.path() + "/IDX0";
  FaultFileSystem fs_{GetParam()};
};

TEST_P(WriterOnEngine, RotatesBySizeAndPublishesEveryFile) {
  IndexThread index(idx_, 0, &fs_);
  BlockWriter w(Options(), &index);
  EXPECT_EQ(Run(&w, 10), 10);
  index.Stop();
  auto files = Visible(pkt_);
  ASSERT_EQ(files.size(), 3u);  // 4 + 4 + 2 blocks
  EXPECT_EQ(files[0].second, static_cast<off_t>(4 * kBlockSize));
  EXPECT_EQ(files[1].second, static_cast<off_t>(4 * kBlockSize));
  EXPECT_EQ(files[2].second, static_cast<off_t>(2 * kBlockSize));
  EXPECT_EQ(Visible(idx_).size(), 3u);
  EXPECT_EQ(w.stats().blocks_written, 10u);
  EXPECT_EQ(w.stats().blocks_dropped, 0u);
}

// A disk that fills in the second file: the engine's completion carries
// the short write, the file is cut before it, every block is released.
TEST_P(WriterOnEngine, ShortWriteCutsTheFile) {
  fs_.faults.write_fail_offset = 2 * kBlockSize;
  fs_.faults.short_write = true;
  IndexThread index(idx_, 0, &fs_);
  BlockWriter w(Options(), &index);
  EXPECT_EQ(Run(&w, 6), 6);
  index.Stop();
  auto files = Visible(pkt_);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].second, static_cast<off_t>(2 * kBlockSize));  // cut before the failed block
  EXPECT_EQ(files[1].second, static_cast<off_t>(2 * kBlockSize));  // the next file starts clean
  EXPECT_GT(w.stats().blocks_dropped, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, WriterOnEngine, ::testing::Values(IoEngine::kAio, IoEngine::kUring),
                         [](const ::testing::TestParamInfo<IoEngine>& p) { return IoEngineName(p.param); });

}  // namespace
}  // namespace steno
