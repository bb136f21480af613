#include "write/block_writer.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "format/block_builder.h"
#include "index/block_index.h"
#include "testutil/temp_dir.h"

namespace steno {
namespace {

constexpr size_t kBlock = 4096;

struct AlignedFree {
  void operator()(uint8_t* p) const { free(p); }
};

std::unique_ptr<uint8_t, AlignedFree> MakeBlock(int packets, uint32_t sec) {
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 4096, kBlock), 0);
  memset(p, 0, kBlock);
  BlockBuilder b(static_cast<uint8_t*>(p), kBlock, 1);
  std::vector<uint8_t> frame(60, 0);
  frame[12] = 0x08;  // IPv4 with protocol 17
  frame[14] = 0x45;
  frame[23] = 17;
  for (int i = 0; i < packets; ++i) b.Add(frame.data(), frame.size(), frame.size(), sec, i);
  b.Finish();
  return std::unique_ptr<uint8_t, AlignedFree>(static_cast<uint8_t*>(p));
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (struct dirent* e = d ? readdir(d) : nullptr) {
    if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)) out.push_back(e->d_name);
  }
  if (d) closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// OutputDir makes PKT0 and IDX0 in a scratch directory.
std::string OutputDir(const TempDir& tmp) {
  const std::string& d = tmp.path();
  mkdir((d + "/PKT0").c_str(), 0755);
  mkdir((d + "/IDX0").c_str(), 0755);
  return d;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

// SmallBlocks is the writer configuration the tests start from.
WriterOptions SmallBlocks(const std::string& packet_dir) {
  WriterOptions o;
  o.packet_dir = packet_dir;
  o.block_size = kBlock;
  return o;
}

// Writes blocks through a writer as the capture thread does.
void WriteBlocks(BlockWriter* w, int n, int64_t start_usec, int64_t step_usec, int* released) {
  std::vector<std::unique_ptr<uint8_t, AlignedFree>> blocks;
  for (int i = 0; i < n; ++i) blocks.push_back(MakeBlock(10, 1000 + i));
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(w->Append(blocks[i].get(), start_usec + i * step_usec, [released] { ++*released; }).ok());
    w->Reap(false);
  }
  ASSERT_TRUE(w->Close().ok());
}

TEST(BlockWriter, RotatesBySizeAndRenames) {
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(dir + "/PKT0");
  o.max_inflight = 3;
  o.file_size = 4 * kBlock;
  BlockWriter w(o, &idx);
  int released = 0;
  WriteBlocks(&w, 10, 1700000000000000, 1, &released);
  idx.Stop();
  EXPECT_EQ(released, 10);  // every block handed back after its write
  std::vector<std::string> pkts = List(dir + "/PKT0"), idxs = List(dir + "/IDX0");
  ASSERT_EQ(pkts.size(), 3u);  // 4 + 4 + 2 blocks
  EXPECT_EQ(pkts, idxs);       // every packet file has its index, nothing hidden
  EXPECT_EQ(pkts[0], "1700000000000000");
  EXPECT_LT(pkts[0], pkts[1]);
  EXPECT_EQ(FileSize(dir + "/PKT0/" + pkts[0]), static_cast<off_t>(4 * kBlock));
  EXPECT_EQ(FileSize(dir + "/PKT0/" + pkts[2]), static_cast<off_t>(2 * kBlock));
  EXPECT_EQ(w.stats().blocks_written, 10u);
  EXPECT_EQ(idx.written(), 3u);
}

TEST(BlockWriter, RotatesByAgeWithIncreasingNames) {
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(dir + "/PKT0");
  o.file_age_usec = 0;  // every block starts a new file
  o.preallocate = 16 * kBlock;
  BlockWriter w(o, &idx);
  int released = 0;
  WriteBlocks(&w, 3, 5, 0, &released);  // same clock value every time
  idx.Stop();
  std::vector<std::string> pkts = List(dir + "/PKT0");
  EXPECT_EQ(pkts, (std::vector<std::string>{"5", "6", "7"}));  // bumped to stay unique
  // Preallocated space is cut back to the data.
  EXPECT_EQ(FileSize(dir + "/PKT0/5"), static_cast<off_t>(kBlock));
}

// A full disk costs blocks, never the process: the file keeps what was
// written, its index only those packets, and later blocks are released.
TEST(BlockWriter, DiskFullDropsBlocksAndKeepsGoing) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  std::string pkt = dir + "/PKT0";
  if (mount("tmpfs", pkt.c_str(), "tmpfs", 0, "size=32k") != 0) GTEST_SKIP() << "cannot mount tmpfs";
  if (!ProbeDirectIO(pkt, kBlock).ok()) {
    umount(pkt.c_str());
    GTEST_SKIP() << "tmpfs here has no O_DIRECT";
  }
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(pkt);
  o.max_inflight = 1;
  BlockWriter w(o, &idx);
  int released = 0;
  WriteBlocks(&w, 20, 1, 1, &released);
  idx.Stop();
  EXPECT_EQ(released, 20);
  EXPECT_GT(w.stats().blocks_dropped, 0u);
  EXPECT_GT(w.stats().blocks_written, 0u);
  std::vector<std::string> pkts = List(pkt);
  ASSERT_EQ(pkts.size(), 1u);
  EXPECT_EQ(FileSize(pkt + "/" + pkts[0]), static_cast<off_t>(w.stats().blocks_written * kBlock));
  umount(pkt.c_str());
}

TEST(BlockWriter, ProbeRejectsMissingDirectory) {
  Status s = ProbeDirectIO("/nonexistent/dir", kBlock);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/dir"), std::string::npos);
}

}  // namespace
}  // namespace steno
