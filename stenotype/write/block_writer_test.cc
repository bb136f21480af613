#include "write/block_writer.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "format/block_builder.h"
#include "index/block_index.h"
#include "testutil/fault_file_system.h"
#include "testutil/read_table.h"
#include "testutil/temp_dir.h"

namespace steno {
namespace {

constexpr size_t kBlock = 4096;

struct AlignedFree {
  void operator()(uint8_t* p) const { free(p); }
};

std::unique_ptr<uint8_t, AlignedFree> MakeBlock(int packets, uint32_t sec, size_t block_size = kBlock) {
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 4096, block_size), 0);
  memset(p, 0, block_size);
  BlockBuilder b(static_cast<uint8_t*>(p), block_size, 1);
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

// WriteBlocks writes n blocks of kPackets packets through a writer as the
// capture thread does, counting releases, and returns Close's status (or
// the first Append error).
constexpr int kPackets = 10;
Status WriteBlocks(BlockWriter* w, int n, int64_t start_usec, int64_t step_usec, int* released) {
  std::vector<std::unique_ptr<uint8_t, AlignedFree>> blocks;
  for (int i = 0; i < n; ++i) blocks.push_back(MakeBlock(kPackets, 1000 + i));
  Status first;
  for (int i = 0; i < n; ++i) {
    Status s = w->Append(blocks[i].get(), start_usec + i * step_usec, [released] { ++*released; });
    if (first.ok()) first = s;
    w->Reap(false);
  }
  Status closed = w->Close();
  return first.ok() ? closed : first;
}

TEST(BlockWriter, RotatesBySizeAndRenames) {
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(dir + "/PKT0");
  o.max_inflight = 3;
  o.file_size = 4 * kBlock;
  BlockWriter w(o, &idx);
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 10, 1700000000000000, 1, &released).ok());
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
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 3, 5, 0, &released).ok());  // same clock value every time
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
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 20, 1, 1, &released).ok());
  idx.Stop();
  EXPECT_EQ(released, 20);
  EXPECT_GT(w.stats().blocks_dropped, 0u);
  EXPECT_GT(w.stats().blocks_written, 0u);
  std::vector<std::string> pkts = List(pkt);
  ASSERT_EQ(pkts.size(), 1u);
  EXPECT_EQ(FileSize(pkt + "/" + pkts[0]), static_cast<off_t>(w.stats().blocks_written * kBlock));
  umount(pkt.c_str());
}

// The error paths, driven by a fault-injecting file system (no root).

// FaultRig is a thread's output directory written through FaultFileSystem.
struct FaultRig {
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  std::string pkt = dir + "/PKT0", idx_dir = dir + "/IDX0";
  FaultFileSystem fs;
  IndexThread idx{idx_dir, 0, &fs};
  WriterOptions Options() {
    WriterOptions o = SmallBlocks(pkt);
    o.fs = &fs;
    o.max_inflight = 2;
    return o;
  }
};

// IndexedPositions is every packet position an index file lists.
std::set<uint32_t> IndexedPositions(const std::string& path) {
  std::set<uint32_t> out;
  for (const auto& [key, positions] : ReadTable(path)) {
    // Keys of type 0x00 (version, pair identity) hold no positions.
    if (!key.empty() && key[0] != '\0') out.insert(positions.begin(), positions.end());
  }
  return out;
}

void WriteFile(const std::string& path, const std::string& data) { std::ofstream(path) << data; }
std::string ReadFile(const std::string& path) {
  std::ostringstream s;
  s << std::ifstream(path).rdbuf();
  return s.str();
}

enum class WriteFault { kNoSpace, kIOError, kShortWrite, kSubmit };

class BlockWriterWriteFault : public ::testing::TestWithParam<WriteFault> {};

// A failed write cuts its file before the failed block: the file keeps the
// blocks before it, the index only their packets, later blocks of the file
// are released unwritten, and the next file starts clean.
TEST_P(BlockWriterWriteFault, CutsTheFileBeforeTheFailedBlock) {
  FaultRig rig;
  Faults& f = rig.fs.faults;
  switch (GetParam()) {
    case WriteFault::kNoSpace: f.write_fail_offset = 3 * kBlock; break;
    case WriteFault::kIOError: f.write_fail_offset = 3 * kBlock, f.write_errno = EIO; break;
    case WriteFault::kShortWrite: f.write_fail_offset = 3 * kBlock, f.short_write = true; break;
    case WriteFault::kSubmit: f.submit_fail_offset = 3 * kBlock; break;
  }
  WriterOptions o = rig.Options();
  o.file_size = 5 * kBlock;
  BlockWriter w(o, &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 10, 1000, 1, &released).ok());  // two files of 5 blocks
  rig.idx.Stop();
  EXPECT_EQ(released, 10);
  EXPECT_EQ(w.stats().blocks_written, 6u);
  EXPECT_EQ(w.stats().blocks_dropped, 4u);
  std::vector<std::string> pkts = List(rig.pkt);
  ASSERT_EQ(pkts.size(), 2u);
  EXPECT_EQ(pkts, List(rig.idx_dir));  // both indexed, nothing hidden
  for (const std::string& name : pkts) {
    EXPECT_EQ(FileSize(rig.pkt + "/" + name), static_cast<off_t>(3 * kBlock)) << name;
    std::set<uint32_t> pos = IndexedPositions(rig.idx_dir + "/" + name);
    EXPECT_EQ(pos.size(), static_cast<size_t>(3 * kPackets)) << name;
    EXPECT_LT(*pos.rbegin(), 3 * kBlock) << name << ": the index lists a packet beyond the cut";
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, BlockWriterWriteFault,
                         ::testing::Values(WriteFault::kNoSpace, WriteFault::kIOError, WriteFault::kShortWrite,
                                           WriteFault::kSubmit));

enum class FinishFault { kSync, kRename, kTruncate };

class BlockWriterFinishFault : public ::testing::TestWithParam<FinishFault> {};

// A file whose cut, sync or rename fails may not be on disk: it is removed
// and never indexed, and the next file is written normally.
TEST_P(BlockWriterFinishFault, RemovesTheFileAndGoesOn) {
  FaultRig rig;
  WriterOptions o = rig.Options();
  o.file_size = 2 * kBlock;
  switch (GetParam()) {
    case FinishFault::kSync: rig.fs.faults.sync_failures = 1; break;
    case FinishFault::kRename: rig.fs.faults.rename_failures = 1; break;
    case FinishFault::kTruncate:
      rig.fs.faults.truncate_failures = 1;
      o.preallocate = 8 * kBlock;  // so the file is cut at its end
      break;
  }
  BlockWriter w(o, &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 4, 1000, 1, &released).ok());
  rig.idx.Stop();
  EXPECT_EQ(released, 4);
  std::vector<std::string> pkts = List(rig.pkt);
  EXPECT_EQ(pkts, std::vector<std::string>{"1002"});  // the first file (1000) is gone, hidden copy too
  EXPECT_EQ(List(rig.idx_dir), pkts);
  EXPECT_EQ(rig.idx.written(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Faults, BlockWriterFinishFault,
                         ::testing::Values(FinishFault::kSync, FinishFault::kRename, FinishFault::kTruncate));

// An index that cannot be written (index disk full) leaves the packet file
// visible with no index file, hidden or not, and one line naming it.
TEST(BlockWriter, IndexWriteFailureLeavesThePacketFileUnindexed) {
  FaultRig rig;
  rig.fs.faults.index_space = 100;
  BlockWriter w(rig.Options(), &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  testing::internal::CaptureStderr();
  ASSERT_TRUE(WriteBlocks(&w, 2, 1000, 1, &released).ok());
  rig.idx.Stop();
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(List(rig.pkt), std::vector<std::string>{"1000"});
  EXPECT_EQ(List(rig.idx_dir), std::vector<std::string>{});
  EXPECT_EQ(rig.idx.failed(), 1u);
  EXPECT_NE(log.find("packet file " + rig.pkt + "/1000 left without an index"), std::string::npos) << log;
}

// A name taken in either directory, hidden or visible, is never reused:
// the writer moves on by 1 µs and the other files stay as they were.
TEST(BlockWriter, SkipsTakenNames) {
  FaultRig rig;
  WriteFile(rig.pkt + "/1000", "earlier");
  WriteFile(rig.idx_dir + "/.1001", "someone's index");
  WriteFile(rig.pkt + "/.1002", "someone's packets");
  BlockWriter w(rig.Options(), &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  int released = 0;
  ASSERT_TRUE(WriteBlocks(&w, 1, 1000, 1, &released).ok());
  rig.idx.Stop();
  EXPECT_EQ(List(rig.pkt), (std::vector<std::string>{".1002", "1000", "1003"}));
  EXPECT_EQ(List(rig.idx_dir), (std::vector<std::string>{".1001", "1003"}));
  EXPECT_EQ(ReadFile(rig.pkt + "/1000"), "earlier");
  EXPECT_EQ(ReadFile(rig.idx_dir + "/.1001"), "someone's index");
  EXPECT_EQ(ReadFile(rig.pkt + "/.1002"), "someone's packets");
}

// A name taken while the file is written (a race no check at open can
// close) is not replaced either, nor paired with an index that is not the
// file's: the rename moves on to a free name.
void WriteWhileNamesAppear(const std::vector<std::string>& appear, const std::vector<std::string>& want_pkt,
                           const std::vector<std::string>& want_idx) {
  FaultRig rig;
  BlockWriter w(rig.Options(), &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  auto block = MakeBlock(kPackets, 1);
  int released = 0;
  ASSERT_TRUE(w.Append(block.get(), 1000, [&] { ++released; }).ok());
  for (const std::string& f : appear) WriteFile(rig.dir + "/" + f, "arrived meanwhile");
  ASSERT_TRUE(w.Close().ok());
  rig.idx.Stop();
  EXPECT_EQ(released, 1);
  EXPECT_EQ(List(rig.pkt), want_pkt);
  EXPECT_EQ(List(rig.idx_dir), want_idx);
  for (const std::string& f : appear) EXPECT_EQ(ReadFile(rig.dir + "/" + f), "arrived meanwhile") << f;
}

TEST(BlockWriter, PacketNameTakenWhileWritingIsNotReplaced) {
  WriteWhileNamesAppear({"PKT0/1000", "IDX0/1001"}, {"1000", "1002"}, {"1001", "1002"});
}

TEST(BlockWriter, IndexNameTakenWhileWritingIsNotPaired) {
  WriteWhileNamesAppear({"IDX0/1000", "PKT0/1001"}, {"1001", "1002"}, {"1000", "1002"});
}

// Drain returns only when every block is back with its owner, which may
// then free it (the import's pool does).
TEST(BlockWriter, DrainReleasesEveryBlock) {
  FaultRig rig;
  WriterOptions o = rig.Options();
  o.max_inflight = 4;
  BlockWriter w(o, &rig.idx);
  ASSERT_TRUE(w.Start().ok());
  std::vector<std::unique_ptr<uint8_t, AlignedFree>> blocks;
  int released = 0;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(MakeBlock(kPackets, 1));
    ASSERT_TRUE(w.Append(blocks.back().get(), 1000, [&] { ++released; }).ok());
  }
  w.Drain();
  EXPECT_EQ(released, 4);
  blocks.clear();
  ASSERT_TRUE(w.Close().ok());
  rig.idx.Stop();
  EXPECT_EQ(FileSize(rig.pkt + "/1000"), static_cast<off_t>(4 * kBlock));
}

TEST(WriteLength, RoundsUpSparseBlocksAndKeepsFullOnesWhole) {
  struct Case {
    size_t used, block_size, want;
  } cases[] = {
      {48, 1 << 20, 4096},               // an empty block: its header
      {4096, 1 << 20, 4096},             // exactly one page
      {4097, 1 << 20, 8192},             // one byte into the next
      {512 << 10, 1 << 20, 512 << 10},   // half full: still sparse
      {(512 << 10) + 1, 1 << 20, 1 << 20},  // more than half: whole
      {1 << 20, 1 << 20, 1 << 20},
      {2048, 4096, 4096},                // one-page blocks are always whole
      {9000, 32768, 12288},
  };
  for (const Case& c : cases) {
    size_t got = WriteLength(c.used, c.block_size);
    EXPECT_EQ(got, c.want) << "used " << c.used << " of " << c.block_size;
    EXPECT_EQ(got % kDirectIOAlign, 0u) << "used " << c.used;
  }
}

// FileOnDisk is a file's length and allocated bytes (st_blocks * 512).
struct FileOnDisk {
  off_t length = -1;
  uint64_t allocated = 0;
};
FileOnDisk OnDisk(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return {};
  return {st.st_size, static_cast<uint64_t>(st.st_blocks) * 512};
}

class BlockWriterSparse : public ::testing::TestWithParam<uint64_t> {};

// A trickle's blocks (one packet in a 256 KiB block) take a page each on
// disk, with or without preallocation, while the file keeps its
// block-multiple length and reads back as the blocks with zeros after
// their used part.
TEST_P(BlockWriterSparse, WritesOnlyTheUsedPartOfSparseBlocks) {
  constexpr size_t kBig = 256 << 10;
  constexpr int kBlocks = 6;
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(dir + "/PKT0");
  o.block_size = kBig;
  o.preallocate = GetParam();
  BlockWriter w(o, &idx);
  ASSERT_TRUE(w.Start().ok());
  std::vector<std::unique_ptr<uint8_t, AlignedFree>> blocks;
  int released = 0;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(MakeBlock(1, 1000 + i, kBig));
    ASSERT_TRUE(w.Append(blocks.back().get(), 1000, [&] { ++released; }).ok());
  }
  ASSERT_TRUE(w.Close().ok());
  idx.Stop();
  EXPECT_EQ(released, kBlocks);
  EXPECT_EQ(w.stats().bytes_written, kBlocks * kDirectIOAlign);
  EXPECT_EQ(w.stats().blocks_written, static_cast<uint64_t>(kBlocks));
  std::string path = dir + "/PKT0/1000";
  FileOnDisk d = OnDisk(path);
  EXPECT_EQ(d.length, static_cast<off_t>(kBlocks * kBig));
  // A file system may round its allocation up; a whole-block writer would
  // take kBlocks * 256 KiB.
  EXPECT_LE(d.allocated, 4 * kBlocks * kDirectIOAlign) << "allocated bytes of " << path;
  std::string data = ReadFile(path);
  ASSERT_EQ(data.size(), kBlocks * kBig);
  for (int i = 0; i < kBlocks; ++i) {
    const uint8_t* b = blocks[i].get();
    std::string want(reinterpret_cast<const char*>(b), kDirectIOAlign);
    want.resize(kBig, '\0');
    EXPECT_EQ(data.compare(i * kBig, kBig, want), 0) << "block " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Preallocate, BlockWriterSparse, ::testing::Values(0, 16 << 20));

// A block more than half full is written whole, as before.
TEST(BlockWriter, WritesFullBlocksWhole) {
  constexpr size_t kBig = 64 << 10;
  TempDir tmp;
  std::string dir = OutputDir(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  WriterOptions o = SmallBlocks(dir + "/PKT0");
  o.block_size = kBig;
  BlockWriter w(o, &idx);
  ASSERT_TRUE(w.Start().ok());
  auto block = MakeBlock(500, 1000, kBig);  // 500 * 128-byte packets: most of 64 KiB
  int released = 0;
  ASSERT_TRUE(w.Append(block.get(), 1000, [&] { ++released; }).ok());
  ASSERT_TRUE(w.Close().ok());
  idx.Stop();
  EXPECT_EQ(w.stats().bytes_written, kBig);
  EXPECT_EQ(OnDisk(dir + "/PKT0/1000").length, static_cast<off_t>(kBig));
}

TEST(BlockWriter, ProbeRejectsMissingDirectory) {
  Status s = ProbeDirectIO("/nonexistent/dir", kBlock);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/dir"), std::string::npos);
}

}  // namespace
}  // namespace steno
