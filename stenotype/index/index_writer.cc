// Writes an Index as a LevelDB table (SPEC §4) with libleveldb's own
// TableBuilder, so the bytes are what any LevelDB table reader expects.
#include <leveldb/env.h>
#include <leveldb/options.h>
#include <leveldb/status.h>
#include <leveldb/table_builder.h>

#include <memory>

#include "base/file.h"
#include "index/index.h"

namespace steno {
namespace {

Status FromLevelDB(const leveldb::Status& s, const std::string& what, const std::string& path) {
  if (s.ok()) return Status::OK();
  return Status::IOError(what + " " + path + ": " + s.ToString());
}

void EncodePositions(const Positions& list, std::string* out) {
  out->resize(list.size() * 4);
  char* p = &(*out)[0];
  for (uint32_t pos : list) {
    p[0] = static_cast<char>(pos >> 24);
    p[1] = static_cast<char>(pos >> 16);
    p[2] = static_cast<char>(pos >> 8);
    p[3] = static_cast<char>(pos);
    p += 4;
  }
}

void PutBigEndian64(uint64_t v, char* p) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v);
}

}  // namespace

Status WriteIndexTable(const Index& index, leveldb::WritableFile* file, const std::string& path,
                       const LiveRange* live) {
  // The reference writes uncompressed tables with LevelDB's default block
  // size and restart interval; the same options give byte-identical files.
  leveldb::Options options;
  options.compression = leveldb::kNoCompression;
  leveldb::TableBuilder builder(options, file);

  const char version[8] = {0, 0, 0, 2, 0, 0, 0, 0};
  builder.Add(leveldb::Slice("\0", 1), leveldb::Slice(version, sizeof(version)));
  const std::string& first = index.first_block_header();
  if (!first.empty()) builder.Add(leveldb::Slice(kPacketFileKey, sizeof(kPacketFileKey)), first);
  if (live != nullptr) {
    char range[16];
    PutBigEndian64(live->from, range);
    PutBigEndian64(live->to, range + 8);
    builder.Add(leveldb::Slice(kLiveRangeKey, sizeof(kLiveRangeKey)), leveldb::Slice(range, sizeof(range)));
  }
  std::string value;
  for (const Index::Entry& e : index.SortedEntries()) {
    EncodePositions(*e.positions, &value);
    builder.Add(e.key, value);
  }
  leveldb::Status s = builder.Finish();
  if (s.ok()) s = file->Sync();
  leveldb::Status c = file->Close();
  if (s.ok()) s = c;
  return FromLevelDB(s, "write index", path);
}

Status WriteIndexFile(const Index& index, const std::string& path) {
  std::unique_ptr<leveldb::WritableFile> file;
  RETURN_IF_ERROR(PosixFileSystem()->NewWritableFile(path, /*exclusive=*/false, &file));
  return WriteIndexTable(index, file.get(), path);
}

}  // namespace steno
