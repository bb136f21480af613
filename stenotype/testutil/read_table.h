// ReadTable: every key of a LevelDB table file with its positions, for
// tests that check what an index file holds.
#ifndef STENOTYPE_TESTUTIL_READ_TABLE_H_
#define STENOTYPE_TESTUTIL_READ_TABLE_H_

#include <gtest/gtest.h>
#include <leveldb/env.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/table.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace steno {

using KeyMap = std::map<std::string, std::vector<uint32_t>>;

inline KeyMap ReadTable(const std::string& path) {
  leveldb::Env* env = leveldb::Env::Default();
  uint64_t size = 0;
  EXPECT_TRUE(env->GetFileSize(path, &size).ok()) << path;
  leveldb::RandomAccessFile* raw = nullptr;
  EXPECT_TRUE(env->NewRandomAccessFile(path, &raw).ok()) << path;
  std::unique_ptr<leveldb::RandomAccessFile> file(raw);
  leveldb::Table* t = nullptr;
  leveldb::Status s = leveldb::Table::Open(leveldb::Options(), file.get(), size, &t);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<leveldb::Table> table(t);
  KeyMap m;
  if (!table) return m;
  std::unique_ptr<leveldb::Iterator> it(table->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::vector<uint32_t> pos;
    const uint8_t* v = reinterpret_cast<const uint8_t*>(it->value().data());
    for (size_t i = 0; i + 4 <= it->value().size(); i += 4)
      pos.push_back(static_cast<uint32_t>(v[i] << 24 | v[i + 1] << 16 | v[i + 2] << 8 | v[i + 3]));
    m[it->key().ToString()] = pos;
  }
  return m;
}

}  // namespace steno

#endif  // STENOTYPE_TESTUTIL_READ_TABLE_H_
