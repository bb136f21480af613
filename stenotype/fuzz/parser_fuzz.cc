// libFuzzer target for the code that touches hostile bytes: the packet
// parser, the index, and the block reader. The first input byte chooses an
// offloaded VLAN id (or none); the rest is a frame. The whole input is also
// walked as a ring block.
#include <stddef.h>
#include <stdint.h>

#include <vector>

#include "format/block.h"
#include "index/block_index.h"
#include "index/index.h"
#include "index/packet_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  int offloaded = data[0] < 16 ? data[0] * 251 % 4096 : -1;
  // Copy to an exact-size buffer so any overread is caught by ASan.
  std::vector<uint8_t> frame(data + 1, data + size);
  steno::PacketKeys keys;
  steno::ParsePacket(frame.data(), frame.size(), offloaded, &keys);
  steno::Index index;
  index.Add(keys, 48);
  index.Add(keys, 4096);
  (void)index.SortedEntries();

  std::vector<uint8_t> block(data, data + size);
  steno::IndexBlock(block.data(), block.size(), 0, &index);
  return 0;
}
