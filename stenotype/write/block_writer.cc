#include "write/block_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "base/logging.h"
#include "format/block.h"

namespace steno {

// kMaxNameTries bounds the search for a free name: a million consecutive
// taken microseconds means something else is wrong.
constexpr int kMaxNameTries = 1 << 20;

BlockWriter::BlockWriter(WriterOptions options, IndexThread* index_thread)
    : opts_(std::move(options)), index_thread_(index_thread) {}

BlockWriter::~BlockWriter() {
  CHECK(pending_.empty()) << "BlockWriter of " << opts_.packet_dir << " destroyed with writes in flight";
}

Status BlockWriter::Start() { return opts_.fs->NewPacketFile(opts_.max_inflight, &file_); }

Status BlockWriter::Append(const uint8_t* block, int64_t now_usec, std::function<void()> release,
                           BlockCounts* counts, std::string* parse_error) {
  Status s = RotateIfDue(now_usec);
  BlockCounts n = IndexBlock(block, opts_.block_size, offset_, index_.get(), parse_error);
  if (counts != nullptr) *counts = n;
  // The header's blk_len as well as the packets' end: write whatever either
  // says is used, so no reader of the header loses a byte it could see.
  size_t used = std::max<size_t>({kBlockHeaderSize, n.end, LoadLE32(block + 20)});
  Submit(block, WriteLength(used, opts_.block_size), std::move(release));
  // At once, not at the next call: on a slow link the next block is a
  // block timeout away.
  CutPieceIfDue(now_usec);
  return s;
}

size_t WriteLength(size_t used, size_t block_size) {
  if (used > block_size / 2) return block_size;
  return std::max(kDirectIOAlign, (used + kDirectIOAlign - 1) / kDirectIOAlign * kDirectIOAlign);
}

bool BlockWriter::NeedsRotation(int64_t now_usec) const {
  if (!open_) return true;
  if (offset_ > 0 && offset_ + opts_.block_size > opts_.file_size) return true;
  return now_usec - opened_usec_ >= opts_.file_age_usec;
}

Status BlockWriter::RotateIfDue(int64_t now_usec) {
  if (!NeedsRotation(now_usec)) {
    CutPieceIfDue(now_usec);
    return Status::OK();
  }
  if (Status s = FinishFile(); !s.ok()) LOG_ERROR << s.ToString();
  return Open(now_usec);
}

void BlockWriter::CutPieceIfDue(int64_t now_usec) {
  if (!live() || !open_ || offset_ == piece_from_ || now_usec - piece_usec_ < opts_.live_index_usec) return;
  pieces_.push_back(Piece{std::move(index_), LiveRange{piece_from_, offset_}});
  index_ = std::make_unique<Index>();
  piece_from_ = offset_;
  piece_usec_ = now_usec;
  HandOffPieces(false);
}

int64_t BlockWriter::LiveDeadlineUsec(int64_t now_usec) const {
  if (!pieces_.empty()) return now_usec + 10000;  // its writes finish in about that time
  if (!live() || !open_ || offset_ == piece_from_) return INT64_MAX;
  return std::max(now_usec, piece_usec_ + opts_.live_index_usec);
}

void BlockWriter::HandOffPieces(bool all) {
  while (!pieces_.empty()) {
    Piece& p = pieces_.front();
    // pending_ is in submission order: its front is the oldest write not done.
    if (!all && !pending_.empty() && pending_.front().offset < p.range.to) return;
    bool publish = status_.ok() && !all;
    index_thread_->PushPiece(std::move(p.index), std::to_string(name_), hidden_, p.range, publish);
    pieces_.pop_front();
  }
}

bool BlockWriter::IndexNameTaken(int64_t name) const {
  if (index_thread_ == nullptr) return false;
  std::string n = std::to_string(name);
  const std::string& idx = index_thread_->dir();
  return opts_.fs->Exists(idx + "/" + n) || opts_.fs->Exists(idx + "/." + n);
}

bool BlockWriter::NameTaken(int64_t name) const {
  std::string n = std::to_string(name);
  return opts_.fs->Exists(opts_.packet_dir + "/" + n) || opts_.fs->Exists(opts_.packet_dir + "/." + n) ||
         IndexNameTaken(name);
}

Status BlockWriter::Open(int64_t name_usec) {
  CHECK(file_ != nullptr) << "BlockWriter of " << opts_.packet_dir << " used before Start()";
  const int64_t wanted = std::max(name_usec, last_name_ + 1);
  for (int64_t name = wanted; name - wanted < kMaxNameTries; ++name) {
    if (NameTaken(name)) continue;
    std::string hidden = opts_.packet_dir + "/." + std::to_string(name);
    Status s = file_->Open(hidden, opts_.preallocate);
    if (s.code() == Status::kAlreadyExists) continue;  // taken since NameTaken looked
    if (!s.ok()) return s;
    if (name != wanted)
      LOG_INFO << "file name " << wanted << " is taken in " << opts_.packet_dir
               << " or its index directory: writing " << hidden << " instead";
    open_ = true;
    hidden_ = hidden;
    name_ = last_name_ = name;
    opened_usec_ = name_usec;
    offset_ = 0;
    holes_.clear();
    status_ = Status::OK();
    bad_offset_ = UINT64_MAX;
    index_ = opts_.index ? std::make_unique<Index>() : nullptr;
    piece_from_ = 0;
    piece_usec_ = INT64_MIN / 2;  // a file's first block is published at once
    stats_.files++;
    LOG_V1 << "opened " << hidden;
    return Status::OK();
  }
  return Status::IOError("no free file name in " + opts_.packet_dir + " from " + std::to_string(wanted));
}

void BlockWriter::Submit(const uint8_t* block, size_t length, std::function<void()> release) {
  if (!open_ || !status_.ok()) {
    // No file, or this file already failed: drop the block, keep capturing.
    // A failed file still counts the block toward its size, so it rotates
    // when it would have, and the next file may find space freed.
    if (open_) offset_ += opts_.block_size;
    stats_.blocks_dropped++;
    release();
    return;
  }
  while (pending_.size() >= static_cast<size_t>(opts_.max_inflight)) ReapAtLeast(1);
  uint64_t tag = next_tag_++;
  Status s = file_->Write(block, length, offset_, tag);
  if (s.ok()) {
    pending_.push_back(Pending{tag, offset_, length, std::move(release)});
    if (length < opts_.block_size && opts_.preallocate > 0) holes_.push_back(Hole{offset_ + length, opts_.block_size - length});
  } else {
    Fail(s, offset_);
    stats_.blocks_dropped++;
    release();
  }
  offset_ += opts_.block_size;
}

void BlockWriter::Fail(const Status& s, uint64_t offset) {
  // One line per file: a full disk fails every block that follows.
  if (status_.ok()) LOG_ERROR << s.ToString() << "; dropping this file's later blocks";
  if (status_.ok()) status_ = s;
  bad_offset_ = std::min(bad_offset_, offset);
}

void BlockWriter::Reap(bool wait) {
  if (pending_.empty()) return;
  ReapAtLeast(wait ? 1 : 0);
}

void BlockWriter::ReapAtLeast(int min) {
  std::vector<PacketFile::Completion> done;
  Status s = file_->Reap(min, opts_.max_inflight, &done);
  // io_getevents fails only on a bad context or arguments: a bug, and
  // going on would spin with blocks never coming back.
  CHECK(s.ok()) << s.ToString();
  for (const PacketFile::Completion& c : done) {
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.tag == c.tag; });
    CHECK(it != pending_.end()) << "completion for an unknown write to " << hidden_;
    if (c.result != static_cast<long>(it->length)) {
      int err = c.result < 0 ? static_cast<int>(-c.result) : ENOSPC;  // a short write means the disk is full
      Fail(Status::FromErrno(err, "write block at offset " + std::to_string(it->offset) + " of", hidden_),
           it->offset);
      stats_.blocks_dropped++;
    } else {
      stats_.blocks_written++;
      stats_.bytes_written += it->length;
    }
    it->release();
    pending_.erase(it);
  }
  if (!pieces_.empty()) HandOffPieces(false);
}

void BlockWriter::Drain() {
  while (!pending_.empty()) ReapAtLeast(1);
}

Status BlockWriter::Publish(const std::string& hidden, int64_t* name) {
  for (int tries = 0; tries < kMaxNameTries; ++tries, ++*name) {
    // The name was free when the file was opened; something may have taken
    // it since: then move on, never replace, and never pair the packets with
    // an index that is not theirs. (The first try's hidden packet file is
    // ours; the rename itself refuses a taken visible name.)
    if (tries > 0 ? NameTaken(*name) : IndexNameTaken(*name)) continue;
    std::string visible = opts_.packet_dir + "/" + std::to_string(*name);
    Status s = opts_.fs->RenameNoReplace(hidden, visible);
    if (s.code() != Status::kAlreadyExists) {
      if (s.ok() && tries > 0) LOG_INFO << "name taken while writing: " << hidden << " renamed to " << visible;
      last_name_ = std::max(last_name_, *name);
      return s;
    }
  }
  return Status::IOError("no free name to rename " + hidden + " to");
}

Status BlockWriter::FinishFile() {
  if (!open_) return Status::OK();
  Drain();
  if (live()) HandOffPieces(true);
  uint64_t size = std::min(offset_, bad_offset_);
  // Always cut: this drops preallocated space and anything at or after a
  // failed write, and gives a file whose last block was written short its
  // whole last block (a hole), so its length is a block multiple as readers
  // expect.
  Status s = file_->Truncate(size);
  if (s.ok() && opts_.preallocate > 0) PunchHoles(size);
  if (s.ok()) s = file_->Sync();
  Status closed = file_->Close();
  if (s.ok()) s = closed;
  open_ = false;
  int64_t name = name_;
  if (s.ok()) s = Publish(hidden_, &name);
  if (!s.ok()) {
    // The packets are not durable: never index them.
    if (Status r = opts_.fs->Remove(hidden_); !r.ok()) LOG_ERROR << r.ToString();
    LOG_ERROR << hidden_ << " removed, not indexed: its packets may not be on disk";
    index_.reset();
    if (live()) index_thread_->Abandon(std::to_string(name_));
    return s;
  }
  std::string visible = opts_.packet_dir + "/" + std::to_string(name);
  if (!status_.ok()) LOG_ERROR << visible << " cut to " << size << " bytes after a failed write";
  LOG_V1 << "finished " << visible << " (" << size << " bytes)";
  if (index_ != nullptr && index_thread_ != nullptr) {
    // The index thread cuts the assembled index: in live mode the earlier
    // pieces are already there.
    index_thread_->Push(std::move(index_), std::to_string(name), visible, bad_offset_ != UINT64_MAX ? size : UINT64_MAX);
  }
  index_.reset();
  return Status::OK();
}

void BlockWriter::PunchHoles(uint64_t size) {
  // Preallocated space under a hole counts as used on disk (du, retention);
  // giving it back keeps a slow link's files small. A failure costs only
  // space, never data: logged once per file.
  for (const Hole& h : holes_) {
    if (h.offset >= size) break;
    if (Status s = file_->PunchHole(h.offset, std::min(h.length, size - h.offset)); !s.ok()) {
      LOG_ERROR << s.ToString() << "; the file keeps its preallocated space";
      break;
    }
  }
  holes_.clear();
}

Status BlockWriter::Close() { return FinishFile(); }

Status ProbeDirectIO(const std::string& dir, size_t block_size) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) return Status::Invalid(dir + " is not a directory");
  std::string probe = dir + "/.stenotype_probe";
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EINVAL)
      return Status::Unsupported("the file system of " + dir + " does not support O_DIRECT, which stenotype needs");
    return Status::FromErrno(errno, "open", probe);
  }
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, block_size) != 0) {
    close(fd);
    unlink(probe.c_str());
    return Status::IOError("out of memory probing " + dir);
  }
  memset(buf, 0, block_size);
  ssize_t n = pwrite(fd, buf, block_size, 0);
  int err = errno;
  free(buf);
  close(fd);
  unlink(probe.c_str());
  if (n != static_cast<ssize_t>(block_size)) {
    if (n < 0 && err == EINVAL)
      return Status::Unsupported("the file system of " + dir + " does not support O_DIRECT writes of " +
                                 std::to_string(block_size) + " bytes");
    return Status::FromErrno(n < 0 ? err : ENOSPC, "O_DIRECT write probe in", dir);
  }
  return Status::OK();
}

}  // namespace steno
