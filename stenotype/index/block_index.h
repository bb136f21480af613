// IndexBlock: parse every packet of one block into an Index, the one step
// shared by live capture, offline import and re-indexing.
#ifndef STENOTYPE_INDEX_BLOCK_INDEX_H_
#define STENOTYPE_INDEX_BLOCK_INDEX_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "index/index.h"

namespace steno {

struct BlockCounts {
  uint32_t packets = 0;
  uint64_t bytes = 0;  // captured frame bytes
  uint32_t end = 0;    // in-block offset just past the last packet's data
};

// IndexBlock adds the packets of block (block_size bytes, at file offset
// base) to index (when not null) and counts them. A corrupt packet chain
// ends the walk; *error (if given) then says why.
BlockCounts IndexBlock(const uint8_t* block, size_t block_size, uint64_t base, Index* index,
                       std::string* error = nullptr);

}  // namespace steno

#endif  // STENOTYPE_INDEX_BLOCK_INDEX_H_
