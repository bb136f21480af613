#include "write/index_thread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/logging.h"

namespace steno {
namespace {

// A whole index replaces the deltas once this many came since the last
// one and they hold as many packets as it did (or, on a slowing link, once
// four times as many came): readers open a few dozen deltas at most, and
// the rewriting costs at most about twice the file's final index.
constexpr int kDeltasPerWhole = 16;
constexpr int kMaxDeltasPerWhole = 64;

// SyncData makes the packets of path durable before a delta points at
// them: a query must never hand out packets a crash could take back.
// ENOENT means the capture thread renamed the file since: its full index
// follows in the queue.
Status SyncData(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open", path);
  Status s;
  if (fdatasync(fd) != 0) s = Status::FromErrno(errno, "fdatasync", path);
  close(fd);
  return s;
}

}  // namespace

IndexThread::IndexThread(std::string index_dir, int nice_level, FileSystem* fs)
    : dir_(std::move(index_dir)), nice_(nice_level), fs_(fs), thread_([this] { Run(); }) {}

IndexThread::~IndexThread() { Stop(); }

void IndexThread::Enqueue(Job job) {
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_back(std::move(job));
  cv_.notify_one();
}

void IndexThread::Push(std::unique_ptr<Index> index, const std::string& name, const std::string& packet_file,
                       uint64_t drop_from) {
  Job job;
  job.kind = Kind::kFinish;
  job.index = std::move(index);
  job.name = name;
  job.packet_file = packet_file;
  job.drop_from = drop_from;
  Enqueue(std::move(job));
}

void IndexThread::PushPiece(std::unique_ptr<Index> piece, const std::string& live_name,
                            const std::string& packet_file, LiveRange range, bool publish) {
  Job job;
  job.kind = Kind::kPiece;
  job.index = std::move(piece);
  job.name = live_name;
  job.packet_file = packet_file;
  job.range = range;
  job.publish = publish;
  Enqueue(std::move(job));
}

void IndexThread::Abandon(const std::string& live_name) {
  Job job;
  job.kind = Kind::kAbandon;
  job.name = live_name;
  Enqueue(std::move(job));
}

void IndexThread::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void IndexThread::Run() {
  if (nice_ != 0) {
    pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (setpriority(PRIO_PROCESS, tid, nice_) != 0)
      LOG_ERROR << Status::FromErrno(errno, "setpriority", "index thread").ToString();
  }
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      while (queue_.empty() && !stopping_) {
        cv_.wait_for(l, std::chrono::seconds(1));
        heartbeat_++;
      }
      if (queue_.empty()) break;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    switch (job.kind) {
      case Kind::kFinish:
        Finish(&job);
        break;
      case Kind::kPiece:
        Piece(&job);
        break;
      case Kind::kAbandon:
        if (live_.name == job.name) DropLive();
        break;
    }
    heartbeat_++;
  }
  // A file whose finish never came (the capture thread failed): its
  // deltas would outlive it.
  DropLive();
}

void IndexThread::Absorb(std::unique_ptr<Index> piece) {
  if (live_.index == nullptr) {
    live_.index = std::move(piece);
  } else if (piece != nullptr) {
    live_.index->Absorb(*piece);
  }
}

void IndexThread::DeltaFailed(const Status& s, const std::string& packet_file) {
  // Once per file: a full index disk fails every second.
  if (!live_.warned) LOG_ERROR << s.ToString() << "; packets of " << packet_file << " become queryable with its index";
  live_.warned = true;
}

void IndexThread::Piece(Job* job) {
  bool publish = job->publish;
  if (publish) {
    Status s = SyncData(job->packet_file);
    if (!s.ok() && s.code() != Status::kNotFound) DeltaFailed(s, job->packet_file);
    publish = s.ok();
  }
  if (live_.name != job->name) {
    DropLive();
    live_.name = job->name;
  }
  std::unique_ptr<Index> piece = std::move(job->index);
  // A piece that continues the deltas is written alone; any other (the
  // first of a file, one after a gap or a failed write) is published
  // inside a whole index.
  bool chained = publish && piece != nullptr && !live_.deltas.empty() && job->range.from == live_.chain_to;
  if (chained) {
    if (piece->first_block_header().empty() && live_.index != nullptr && !live_.index->first_block_header().empty())
      piece->SetFirstBlockHeader(reinterpret_cast<const uint8_t*>(live_.index->first_block_header().data()));
    if (Status s = WriteDelta(*piece, job->range); s.ok()) {
      live_.since_whole++;
    } else {
      DeltaFailed(s, job->packet_file);
      chained = false;
    }
  }
  Absorb(std::move(piece));
  if (!publish || live_.index == nullptr) return;
  uint64_t packets = live_.index->packets();
  bool due = live_.since_whole >= kMaxDeltasPerWhole ||
             (live_.since_whole >= kDeltasPerWhole && packets - live_.whole_packets >= live_.whole_packets);
  if (chained && !due) return;
  std::vector<std::string> replaced = std::move(live_.deltas);
  live_.deltas.clear();
  if (Status s = WriteDelta(*live_.index, LiveRange{0, job->range.to}); !s.ok()) DeltaFailed(s, job->packet_file);
  live_.since_whole = 0;
  live_.whole_packets = packets;
  for (const std::string& p : replaced) {
    if (Status r = fs_->Remove(p); !r.ok()) LOG_ERROR << r.ToString();
  }
}

Status IndexThread::WriteDelta(const Index& index, LiveRange range) {
  std::string path = dir_ + "/." + live_.name + ".d" + std::to_string(++live_.seq);
  std::string tmp = path + ".tmp";
  std::unique_ptr<leveldb::WritableFile> file;
  RETURN_IF_ERROR(fs_->NewWritableFile(tmp, /*exclusive=*/true, &file));
  Status s = WriteIndexTable(index, file.get(), tmp, &range);
  file.reset();
  if (s.ok()) s = fs_->RenameNoReplace(tmp, path);
  if (!s.ok()) {
    if (Status r = fs_->Remove(tmp); !r.ok()) LOG_ERROR << r.ToString();
    return s;
  }
  live_.deltas.push_back(path);
  live_.chain_to = range.to;
  deltas_++;
  return Status::OK();
}

void IndexThread::DropLive() {
  for (const std::string& p : live_.deltas) {
    if (Status r = fs_->Remove(p); !r.ok()) LOG_ERROR << r.ToString();
  }
  live_ = Live{};
}

void IndexThread::Finish(Job* job) {
  std::unique_ptr<Index> index = std::move(live_.index);
  if (index == nullptr) {
    index = std::move(job->index);
  } else if (job->index != nullptr) {
    index->Absorb(*job->index);
  }
  if (index == nullptr) index = std::make_unique<Index>();
  if (job->drop_from != UINT64_MAX) index->DropFrom(static_cast<uint32_t>(std::min<uint64_t>(job->drop_from, UINT32_MAX)));
  Status s = Write(*index, job->name);
  if (s.ok()) {
    written_++;
    LOG_V1 << "wrote index " << dir_ << "/" << job->name << " (" << index->packets() << " packets)";
  } else {
    failed_++;
    LOG_ERROR << "packet file " << job->packet_file << " left without an index: " << s.ToString()
              << " (stenodump reindex rebuilds it)";
  }
  // Only now: until the full index is in place the deltas serve the file.
  DropLive();
}

Status IndexThread::Write(const Index& index, const std::string& name) {
  std::string hidden = dir_ + "/." + name, visible = dir_ + "/" + name;
  std::unique_ptr<leveldb::WritableFile> file;
  // Exclusive: a hidden index of that name is someone else's, not ours to
  // replace or remove.
  RETURN_IF_ERROR(fs_->NewWritableFile(hidden, /*exclusive=*/true, &file));
  Status s = WriteIndexTable(index, file.get(), hidden);
  file.reset();
  if (s.ok()) s = fs_->RenameNoReplace(hidden, visible);
  if (!s.ok()) {
    if (Status r = fs_->Remove(hidden); !r.ok()) LOG_ERROR << r.ToString();
  }
  return s;
}

}  // namespace steno
