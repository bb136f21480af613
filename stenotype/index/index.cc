#include "index/index.h"

#include <string.h>

#include <algorithm>

#include "format/block.h"

namespace steno {
namespace {

// Append pos unless it is already the last element (positions ascend).
inline void Append(Positions* list, uint32_t pos) {
  if (list->empty() || list->back() != pos) list->push_back(pos);
}

}  // namespace

template <size_t N>
KeyTable<N>::KeyTable() : slots_(1024, 0) {}

template <size_t N>
uint64_t KeyTable<N>::Hash(const uint8_t* key) {
  // FNV-1a over the key, then a multiply to spread low-entropy addresses.
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < N; ++i) h = (h ^ key[i]) * 1099511628211ull;
  return h * 0x9e3779b97f4a7c15ull;
}

template <size_t N>
Positions* KeyTable<N>::Find(const uint8_t* key) {
  size_t mask = slots_.size() - 1;
  for (size_t i = (Hash(key) >> 20) & mask;; i = (i + 1) & mask) {
    uint32_t s = slots_[i];
    if (s == 0) {
      if ((keys_.size() + 1) * 2 > slots_.size()) {  // keep load below 1/2
        Grow();
        return Find(key);
      }
      Key k;
      memcpy(k.data(), key, N);
      keys_.push_back(k);
      lists_.emplace_back();
      slots_[i] = static_cast<uint32_t>(keys_.size());
      return &lists_.back();
    }
    if (memcmp(keys_[s - 1].data(), key, N) == 0) return &lists_[s - 1];
  }
}

template <size_t N>
void KeyTable<N>::Grow() {
  std::vector<uint32_t> slots(slots_.size() * 2, 0);
  size_t mask = slots.size() - 1;
  for (size_t j = 0; j < keys_.size(); ++j) {
    size_t i = (Hash(keys_[j].data()) >> 20) & mask;
    while (slots[i] != 0) i = (i + 1) & mask;
    slots[i] = static_cast<uint32_t>(j + 1);
  }
  slots_.swap(slots);
}

template class KeyTable<4>;
template class KeyTable<16>;

Index::Index() : proto_(256), port_(65536), vlan_(4096) {}

void Index::Add(const PacketKeys& k, uint32_t pos) {
  ++packets_;
  if (k.has_proto) Append(&proto_[k.proto], pos);
  for (int i = 0; i < k.num_ports; ++i) Append(&port_[k.ports[i]], pos);
  for (int i = 0; i < k.num_vlans; ++i) Append(&vlan_[k.vlans[i] & 0x0fff], pos);
  for (int i = 0; i < k.num_mpls; ++i) {
    uint8_t be[4] = {static_cast<uint8_t>(k.mpls[i] >> 24), static_cast<uint8_t>(k.mpls[i] >> 16),
                     static_cast<uint8_t>(k.mpls[i] >> 8), static_cast<uint8_t>(k.mpls[i])};
    Append(mpls_.Find(be), pos);
  }
  if (k.ip_version == 4) {
    Append(ipv4_.Find(k.src_ip), pos);
    Append(ipv4_.Find(k.dst_ip), pos);
  } else if (k.ip_version == 6) {
    Append(ipv6_.Find(k.src_ip), pos);
    Append(ipv6_.Find(k.dst_ip), pos);
  }
}

void Index::SetFirstBlockHeader(const uint8_t* header) {
  first_block_header_.assign(reinterpret_cast<const char*>(header), kBlockHeaderSize);
}

void Index::DropFrom(uint32_t position) {
  // The first block did not reach the file: there is nothing to identify.
  if (position == 0) first_block_header_.clear();
  auto cut = [position](Positions* l) {
    l->erase(std::lower_bound(l->begin(), l->end(), position), l->end());
  };
  for (Positions& l : proto_) cut(&l);
  for (Positions& l : port_) cut(&l);
  for (Positions& l : vlan_) cut(&l);
  ipv4_.ForEachList(cut);
  mpls_.ForEachList(cut);
  ipv6_.ForEachList(cut);
}

namespace {

void AppendAll(const Positions& from, Positions* to) { to->insert(to->end(), from.begin(), from.end()); }

template <size_t N>
void AbsorbTable(const KeyTable<N>& from, KeyTable<N>* to) {
  for (size_t i = 0; i < from.size(); ++i) {
    if (!from.list(i).empty()) AppendAll(from.list(i), to->Find(from.key(i).data()));
  }
}

}  // namespace

void Index::Absorb(const Index& later) {
  packets_ += later.packets_;
  if (first_block_header_.empty()) first_block_header_ = later.first_block_header_;
  for (size_t v = 0; v < proto_.size(); ++v) AppendAll(later.proto_[v], &proto_[v]);
  for (size_t v = 0; v < port_.size(); ++v) AppendAll(later.port_[v], &port_[v]);
  for (size_t v = 0; v < vlan_.size(); ++v) AppendAll(later.vlan_[v], &vlan_[v]);
  AbsorbTable(later.ipv4_, &ipv4_);
  AbsorbTable(later.mpls_, &mpls_);
  AbsorbTable(later.ipv6_, &ipv6_);
}

namespace {

template <size_t N>
void AddTable(const KeyTable<N>& t, uint8_t type, std::vector<Index::Entry>* out) {
  size_t first = out->size();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t.list(i).empty()) continue;
    std::string key(1, static_cast<char>(type));
    key.append(reinterpret_cast<const char*>(t.key(i).data()), N);
    out->push_back({std::move(key), &t.list(i)});
  }
  std::sort(out->begin() + first, out->end(),
            [](const Index::Entry& a, const Index::Entry& b) { return a.key < b.key; });
}

void AddArray(const std::vector<Positions>& lists, uint8_t type, int value_bytes,
              std::vector<Index::Entry>* out) {
  for (size_t v = 0; v < lists.size(); ++v) {
    if (lists[v].empty()) continue;
    std::string key(1, static_cast<char>(type));
    if (value_bytes == 2) key.push_back(static_cast<char>(v >> 8));
    key.push_back(static_cast<char>(v & 0xff));
    out->push_back({std::move(key), &lists[v]});
  }
}

}  // namespace

std::vector<Index::Entry> Index::SortedEntries() const {
  std::vector<Entry> out;
  // Types are emitted in type-byte order; within a type, array indices are
  // already in big-endian value order and hash tables are sorted.
  AddArray(proto_, kKeyProto, 1, &out);
  AddArray(port_, kKeyPort, 2, &out);
  AddArray(vlan_, kKeyVlan, 2, &out);
  AddTable(ipv4_, kKeyIPv4, &out);
  AddTable(mpls_, kKeyMpls, &out);
  AddTable(ipv6_, kKeyIPv6, &out);
  return out;
}

}  // namespace steno
