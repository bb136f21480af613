// The live index: deltas of the file being written, and the full index
// assembled from pieces byte for byte the one written at rotation alone.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "format/block_builder.h"
#include "testutil/fault_file_system.h"
#include "testutil/read_table.h"
#include "testutil/temp_dir.h"
#include "write/block_writer.h"

namespace steno {
namespace {

constexpr size_t kBlock = 4096;
constexpr int64_t kSecond = 1000000;
constexpr int64_t kStart = 1700000000000000;

struct AlignedFree {
  void operator()(uint8_t* p) const { free(p); }
};
using Block = std::unique_ptr<uint8_t, AlignedFree>;

// MakeBlock holds packets of UDP port 1000+i for packet i, so that each
// block adds keys of its own.
Block MakeBlock(int first, int packets) {
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 4096, kBlock), 0);
  memset(p, 0, kBlock);
  BlockBuilder b(static_cast<uint8_t*>(p), kBlock, 1);
  for (int i = first; i < first + packets; ++i) {
    std::vector<uint8_t> frame(60, 0);
    frame[12] = 0x08;
    frame[14] = 0x45;
    frame[23] = 17;
    frame[26] = 10, frame[29] = static_cast<uint8_t>(i);  // 10.0.0.i
    frame[34] = static_cast<uint8_t>((1000 + i) >> 8), frame[35] = static_cast<uint8_t>(1000 + i);
    b.Add(frame.data(), frame.size(), frame.size(), 1000 + i, 0);
  }
  b.Finish();
  return Block(static_cast<uint8_t*>(p));
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (struct dirent* e = d ? readdir(d) : nullptr) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
  }
  if (d) closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Dirs(const TempDir& tmp) {
  mkdir((tmp.path() + "/PKT0").c_str(), 0755);
  mkdir((tmp.path() + "/IDX0").c_str(), 0755);
  return tmp.path();
}

WriterOptions Options(const std::string& dir, int64_t live_usec) {
  WriterOptions o;
  o.packet_dir = dir + "/PKT0";
  o.block_size = kBlock;
  o.file_age_usec = 3600 * kSecond;
  o.live_index_usec = live_usec;
  return o;
}

// WaitForDeltas waits until the index thread has written n deltas.
bool WaitForDeltas(const IndexThread& idx, uint64_t n) {
  for (int i = 0; i < 500 && idx.deltas() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return idx.deltas() >= n;
}

std::pair<uint64_t, uint64_t> Range(const KeyMap& m) {
  auto it = m.find(std::string(kLiveRangeKey, sizeof(kLiveRangeKey)));
  if (it == m.end() || it->second.size() != 4) return {UINT64_MAX, UINT64_MAX};
  const auto& v = it->second;
  return {static_cast<uint64_t>(v[0]) << 32 | v[1], static_cast<uint64_t>(v[2]) << 32 | v[3]};
}

std::string PortKey(int port) { return std::string{0x02, static_cast<char>(port >> 8), static_cast<char>(port & 0xff)}; }

TEST(LiveIndex, PublishesDeltasAndAssemblesTheSameFullIndex) {
  std::vector<Block> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(MakeBlock(i * 3, 3));

  // The same blocks through a writer with the live index and one without.
  TempDir live_tmp, plain_tmp;
  std::string live = Dirs(live_tmp), plain = Dirs(plain_tmp);
  {
    IndexThread idx(plain + "/IDX0", 0);
    BlockWriter w(Options(plain, 0), &idx);
    ASSERT_TRUE(w.Start().ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(w.Append(blocks[i].get(), kStart + i * 2 * kSecond, [] {}).ok());
    ASSERT_TRUE(w.Close().ok());
    idx.Stop();
    EXPECT_EQ(idx.deltas(), 0u);
  }
  IndexThread idx(live + "/IDX0", 0);
  BlockWriter w(Options(live, kSecond), &idx);
  ASSERT_TRUE(w.Start().ok());
  const std::string name = std::to_string(kStart);
  // Two blocks two seconds apart: a piece each, once its write is done.
  ASSERT_TRUE(w.Append(blocks[0].get(), kStart, [] {}).ok());
  ASSERT_TRUE(w.Append(blocks[1].get(), kStart + 2 * kSecond, [] {}).ok());
  w.Drain();
  ASSERT_TRUE(WaitForDeltas(idx, 2));
  std::vector<std::string> files = List(live + "/IDX0");
  ASSERT_EQ(files, (std::vector<std::string>{"." + name + ".d1", "." + name + ".d2"}));
  KeyMap d1 = ReadTable(live + "/IDX0/" + files[0]), d2 = ReadTable(live + "/IDX0/" + files[1]);
  // The first is published whole, from 0; the next holds only its block.
  EXPECT_EQ(Range(d1), std::make_pair(uint64_t{0}, uint64_t{kBlock}));
  EXPECT_EQ(Range(d2), std::make_pair(uint64_t{kBlock}, uint64_t{2 * kBlock}));
  EXPECT_TRUE(d1.count(PortKey(1000)));
  EXPECT_FALSE(d1.count(PortKey(1003)));
  EXPECT_TRUE(d2.count(PortKey(1003)));
  EXPECT_FALSE(d2.count(PortKey(1000)));
  for (uint32_t p : d2[PortKey(1003)]) EXPECT_GE(p, kBlock);
  // Both carry the pair-identity record of the hidden packet file.
  std::string id(kPacketFileKey, sizeof(kPacketFileKey));
  EXPECT_TRUE(d1.count(id));
  EXPECT_TRUE(d2.count(id));
  EXPECT_EQ(List(live + "/PKT0"), (std::vector<std::string>{"." + name}));

  for (int i = 2; i < 5; ++i) ASSERT_TRUE(w.Append(blocks[i].get(), kStart + i * 2 * kSecond, [] {}).ok());
  ASSERT_TRUE(w.Close().ok());
  idx.Stop();
  // Rotation leaves the visible pair only, with the index the plain
  // writer wrote.
  EXPECT_EQ(List(live + "/IDX0"), (std::vector<std::string>{name}));
  EXPECT_EQ(List(live + "/PKT0"), (std::vector<std::string>{name}));
  EXPECT_EQ(Slurp(live + "/IDX0/" + name), Slurp(plain + "/IDX0/" + name));
  EXPECT_EQ(Slurp(live + "/PKT0/" + name), Slurp(plain + "/PKT0/" + name));
}

TEST(LiveIndex, ReplacesManyDeltasWithAWholeOne) {
  TempDir tmp;
  std::string dir = Dirs(tmp);
  IndexThread idx(dir + "/IDX0", 0);
  BlockWriter w(Options(dir, kSecond), &idx);
  ASSERT_TRUE(w.Start().ok());
  std::vector<Block> blocks;
  for (int i = 0; i < 20; ++i) blocks.push_back(MakeBlock(i, 1));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(w.Append(blocks[i].get(), kStart + i * 2 * kSecond, [] {}).ok());
    w.Drain();
  }
  ASSERT_TRUE(WaitForDeltas(idx, 21));
  // 1 whole, 16 deltas, then a whole one replaces them all, then 3 more.
  std::vector<std::string> files = List(dir + "/IDX0");
  ASSERT_EQ(files.size(), 4u) << ::testing::PrintToString(files);
  std::string last;
  for (const std::string& f : files) {
    if (Range(ReadTable(dir + "/IDX0/" + f)).first == 0) last = f;
  }
  KeyMap whole = ReadTable(dir + "/IDX0/" + last);
  EXPECT_EQ(Range(whole), std::make_pair(uint64_t{0}, uint64_t{17 * kBlock}));
  for (int i = 0; i < 17; ++i) EXPECT_TRUE(whole.count(PortKey(1000 + i))) << i;
  ASSERT_TRUE(w.Close().ok());
  idx.Stop();
  EXPECT_EQ(List(dir + "/IDX0").size(), 1u);
}

TEST(LiveIndex, NothingIsPublishedAfterAFailedWrite) {
  TempDir tmp;
  std::string dir = Dirs(tmp);
  FaultFileSystem fs;
  fs.faults.write_fail_offset = kBlock;  // the second block's write fails
  IndexThread idx(dir + "/IDX0", 0, &fs);
  WriterOptions o = Options(dir, kSecond);
  o.fs = &fs;
  BlockWriter w(o, &idx);
  ASSERT_TRUE(w.Start().ok());
  std::vector<Block> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(MakeBlock(i, 1));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(w.Append(blocks[i].get(), kStart + i * 2 * kSecond, [] {}).ok());
    w.Drain();
  }
  ASSERT_TRUE(WaitForDeltas(idx, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(idx.deltas(), 1u);  // the first block's only
  ASSERT_TRUE(w.Close().ok());
  idx.Stop();
  const std::string name = std::to_string(kStart);
  EXPECT_EQ(List(dir + "/IDX0"), (std::vector<std::string>{name}));
  KeyMap full = ReadTable(dir + "/IDX0/" + name);
  EXPECT_TRUE(full.count(PortKey(1000)));
  EXPECT_FALSE(full.count(PortKey(1001)));  // cut with its file
  EXPECT_FALSE(full.count(PortKey(1002)));
}

}  // namespace
}  // namespace steno
