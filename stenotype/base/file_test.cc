#include "base/file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "testutil/temp_dir.h"

namespace steno {
namespace {

constexpr size_t kBlock = 64 << 10;

struct AlignedFree {
  void operator()(uint8_t* p) const { free(p); }
};
using Buffer = std::unique_ptr<uint8_t, AlignedFree>;

// Filled(n, seed) is n bytes aligned for O_DIRECT, each block's bytes
// telling it apart from the others.
Buffer Filled(size_t n, int seed) {
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 4096, n), 0);
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed * 31 + i);
  return Buffer(b);
}

std::string Contents(const std::string& path) {
  std::string out;
  int fd = open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << path;
  char buf[1 << 16];
  for (ssize_t n; fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  if (fd >= 0) close(fd);
  return out;
}

// Every engine must give the PacketFile contract of base/file.h; the
// BlockWriter relies on nothing else.
class PacketFileEngine : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    Status s = PosixFileSystem(GetParam())->NewPacketFile(kInflight, &file_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // ReapAll waits for n completions, in Reap calls of at most max.
  std::vector<PacketFile::Completion> ReapAll(size_t n, int max) {
    std::vector<PacketFile::Completion> done;
    while (done.size() < n) {
      size_t before = done.size();
      Status s = file_->Reap(1, max, &done);
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_LE(done.size() - before, static_cast<size_t>(max));
      if (!s.ok()) break;
    }
    return done;
  }

  static constexpr int kInflight = 8;
  TempDir tmp_;
  std::unique_ptr<PacketFile> file_;
};

TEST_P(PacketFileEngine, WritesBlocksAtTheirOffsetsAndReportsEachTag) {
  const std::string path = tmp_.path() + "/f";
  ASSERT_TRUE(file_->Open(path, 0).ok());
  std::vector<Buffer> blocks;
  std::string want;
  for (int i = 0; i < kInflight; ++i) {
    blocks.push_back(Filled(kBlock, i));
    want.append(reinterpret_cast<const char*>(blocks.back().get()), kBlock);
  }
  // Submitted out of order: each lands at its own offset.
  for (int i = kInflight - 1; i >= 0; --i) {
    Status s = file_->Write(blocks[i].get(), kBlock, i * kBlock, 100 + i);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::set<uint64_t> tags;
  for (const auto& c : ReapAll(kInflight, 3)) {
    EXPECT_EQ(c.result, static_cast<long>(kBlock)) << "tag " << c.tag;
    tags.insert(c.tag);
  }
  EXPECT_EQ(tags.size(), static_cast<size_t>(kInflight));
  EXPECT_EQ(*tags.begin(), 100u);
  EXPECT_EQ(*tags.rbegin(), 100u + kInflight - 1);
  ASSERT_TRUE(file_->Sync().ok());
  ASSERT_TRUE(file_->Close().ok());
  EXPECT_TRUE(Contents(path) == want);
}

TEST_P(PacketFileEngine, ReapWithoutMinimumNeverWaits) {
  std::vector<PacketFile::Completion> done;
  ASSERT_TRUE(file_->Reap(0, kInflight, &done).ok());  // nothing in flight: returns at once
  EXPECT_TRUE(done.empty());
  ASSERT_TRUE(file_->Open(tmp_.path() + "/f", 0).ok());
  Buffer b = Filled(kBlock, 1);
  ASSERT_TRUE(file_->Write(b.get(), kBlock, 0, 7).ok());
  // The write finishes in its own time; polling sees it sooner or later.
  for (int i = 0; i < 10000 && done.empty(); ++i) {
    ASSERT_TRUE(file_->Reap(0, kInflight, &done).ok());
    if (done.empty()) usleep(100);
  }
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tag, 7u);
  EXPECT_EQ(done[0].result, static_cast<long>(kBlock));
  ASSERT_TRUE(file_->Close().ok());
}

// The context outlives files: many files, one after another, on one
// PacketFile (as rotation does), with sparse writes, a cut and holes.
TEST_P(PacketFileEngine, OneContextWritesFileAfterFile) {
  Buffer b = Filled(kBlock, 3);
  for (int f = 0; f < 5; ++f) {
    const std::string path = tmp_.path() + "/f" + std::to_string(f);
    ASSERT_TRUE(file_->Open(path, f % 2 == 1 ? 4 * kBlock : 0).ok());
    ASSERT_TRUE(file_->Write(b.get(), 4096, 0, 1).ok());        // a sparse block's used part
    ASSERT_TRUE(file_->Write(b.get(), kBlock, kBlock, 2).ok());  // a full block
    auto done = ReapAll(2, kInflight);
    ASSERT_EQ(done.size(), 2u);
    for (const auto& c : done) EXPECT_EQ(c.result, static_cast<long>(c.tag == 1 ? 4096 : kBlock));
    ASSERT_TRUE(file_->Truncate(2 * kBlock).ok());
    ASSERT_TRUE(file_->PunchHole(4096, kBlock - 4096).ok());
    ASSERT_TRUE(file_->Sync().ok());
    ASSERT_TRUE(file_->Close().ok());
    std::string got = Contents(path);
    ASSERT_EQ(got.size(), 2 * kBlock);
    EXPECT_EQ(got.substr(0, 4096), std::string(reinterpret_cast<const char*>(b.get()), 4096));
    EXPECT_EQ(got.substr(4096, kBlock - 4096), std::string(kBlock - 4096, '\0'));
    EXPECT_TRUE(got.substr(kBlock) == std::string(reinterpret_cast<const char*>(b.get()), kBlock));
  }
}

TEST_P(PacketFileEngine, OpenNeverReplaces) {
  const std::string path = tmp_.path() + "/f";
  close(open(path.c_str(), O_WRONLY | O_CREAT, 0600));
  Status s = file_->Open(path, 0);
  EXPECT_EQ(s.code(), Status::kAlreadyExists) << s.ToString();
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

// A write O_DIRECT refuses (an unaligned offset) is an error, at submission
// (libaio) or in its completion (io_uring), never a crash or a silent loss.
TEST_P(PacketFileEngine, RefusedWriteIsReported) {
  ASSERT_TRUE(file_->Open(tmp_.path() + "/f", 0).ok());
  Buffer b = Filled(kBlock, 4);
  Status s = file_->Write(b.get(), kBlock, 512 + 1, 9);
  if (s.ok()) {
    auto done = ReapAll(1, kInflight);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].tag, 9u);
    EXPECT_EQ(done[0].result, -EINVAL);
  } else {
    EXPECT_NE(s.message().find("/f"), std::string::npos) << s.message();
  }
  // The file goes on working.
  ASSERT_TRUE(file_->Write(b.get(), kBlock, 0, 10).ok());
  auto done = ReapAll(1, kInflight);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, static_cast<long>(kBlock));
  ASSERT_TRUE(file_->Close().ok());
}

INSTANTIATE_TEST_SUITE_P(Engines, PacketFileEngine, ::testing::Values(IoEngine::kAio, IoEngine::kUring),
                         [](const ::testing::TestParamInfo<IoEngine>& p) { return IoEngineName(p.param); });

TEST(IoEngine, NamesRoundTrip) {
  for (IoEngine e : {IoEngine::kAio, IoEngine::kUring}) {
    IoEngine got = e == IoEngine::kAio ? IoEngine::kUring : IoEngine::kAio;
    ASSERT_TRUE(ParseIoEngine(IoEngineName(e), &got));
    EXPECT_EQ(got, e);
  }
  IoEngine e;
  EXPECT_FALSE(ParseIoEngine("libaio", &e));
}

}  // namespace
}  // namespace steno
