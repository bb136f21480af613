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
  // One Index for the whole run: building its tables per input would cost
  // more than the parsing under test. Positions only have to ascend.
  static steno::Index index;
  static uint32_t position = 0;
  if (position > (3u << 30)) {  // stay clear of 32-bit wrap: start over
    index.DropFrom(0);
    position = 0;
  }
  index.Add(keys, position += 64);

  std::vector<uint8_t> block(data, data + size);
  steno::IndexBlock(block.data(), block.size(), position += 64, &index);
  position += static_cast<uint32_t>(size);
  if (data[0] == 0xee) (void)index.SortedEntries();
  return 0;
}
