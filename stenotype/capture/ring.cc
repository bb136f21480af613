#include "capture/ring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "base/logging.h"

namespace steno {

// On a loopback device every packet passes the socket twice, once leaving
// and once arriving; libpcap keeps only the arriving copy there, and so do
// we, so that a capture on lo holds each packet once. On other devices the
// outgoing packets are the host's own traffic and are kept.
static Status IgnoreLoopbackEchoes(int fd, const std::string& iface) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) return Status::FromErrno(errno, "ioctl(SIOCGIFFLAGS) on", iface);
  if ((ifr.ifr_flags & IFF_LOOPBACK) == 0) return Status::OK();
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0)
    return Status::FromErrno(errno, "setsockopt(PACKET_IGNORE_OUTGOING) on", iface);
  return Status::OK();
}

static Status AttachFilter(int fd, const std::vector<struct sock_filter>& filter, const std::string& iface) {
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(filter.size());
  prog.filter = const_cast<struct sock_filter*>(filter.data());
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0)
    return Status::FromErrno(errno, "setsockopt(SO_ATTACH_FILTER) on", iface);
  return Status::OK();
}

// Open lets no frame into the ring before the socket is bound to the
// interface and has joined its fanout group. The socket is created with
// protocol 0, so it receives nothing until bind (created with ETH_P_ALL it
// would take every interface's frames until then); a drop-all filter then
// covers the moment between bind and the fanout join, when the socket
// would get copies of the frames the group's members already get. The
// real filter replaces it last.
Status Ring::Open(const RingOptions& o, std::unique_ptr<Ring>* out) {
  unsigned ifindex = if_nametoindex(o.iface.c_str());
  if (ifindex == 0) return Status::NotFound("interface " + o.iface + " does not exist");
  auto r = std::make_unique<Ring>();
  r->iface_ = o.iface;
  r->ifindex_ = static_cast<int>(ifindex);
  r->block_size_ = o.block_size;
  r->blocks_ = o.blocks;
  r->fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (r->fd_ < 0) return Status::FromErrno(errno, "socket(AF_PACKET) for", o.iface);
  int v = TPACKET_V3;
  if (setsockopt(r->fd_, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) != 0)
    return Status::FromErrno(errno, "setsockopt(PACKET_VERSION) on", o.iface);
  static const std::vector<struct sock_filter> kDropAll = {{BPF_RET | BPF_K, 0, 0, 0}};
  RETURN_IF_ERROR(AttachFilter(r->fd_, kDropAll, o.iface));
  RETURN_IF_ERROR(IgnoreLoopbackEchoes(r->fd_, o.iface));
  struct tpacket_req3 req;
  memset(&req, 0, sizeof(req));
  req.tp_block_size = static_cast<unsigned>(o.block_size);
  req.tp_block_nr = static_cast<unsigned>(o.blocks);
  req.tp_frame_size = 2048;  // unused by V3 beyond the kernel's sanity check
  req.tp_frame_nr = static_cast<unsigned>(o.block_size / 2048 * o.blocks);
  req.tp_retire_blk_tov = static_cast<unsigned>(o.block_timeout_ms);
  req.tp_feature_req_word = 0;
  if (setsockopt(r->fd_, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0)
    return Status::FromErrno(errno, "setsockopt(PACKET_RX_RING " + std::to_string(o.blocks) + " x " +
                                        std::to_string(o.block_size) + " bytes) on",
                             o.iface);
  r->map_size_ = o.block_size * static_cast<size_t>(o.blocks);
  void* m = mmap(nullptr, r->map_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, r->fd_, 0);
  if (m == MAP_FAILED) {
    // MAP_LOCKED needs CAP_IPC_LOCK or a high memlock limit; unlocked works.
    m = mmap(nullptr, r->map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_, 0);
    if (m == MAP_FAILED) return Status::FromErrno(errno, "mmap ring of", o.iface);
  }
  r->map_ = static_cast<uint8_t*>(m);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof(sll));
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (bind(r->fd_, reinterpret_cast<struct sockaddr*>(&sll), sizeof(sll)) != 0)
    return Status::FromErrno(errno, "bind", o.iface);
  if (o.promisc) {
    struct packet_mreq mr;
    memset(&mr, 0, sizeof(mr));
    mr.mr_ifindex = static_cast<int>(ifindex);
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(r->fd_, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) != 0)
      return Status::FromErrno(errno, "setsockopt(PACKET_ADD_MEMBERSHIP promiscuous) on", o.iface);
  }
  if (o.fanout) {
    int arg = static_cast<int>(o.fanout_id | (o.fanout_type << 16));
    if (setsockopt(r->fd_, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) != 0)
      return Status::FromErrno(errno, "setsockopt(PACKET_FANOUT id " + std::to_string(o.fanout_id) + ") on", o.iface);
  }
  if (!o.filter.empty()) {
    RETURN_IF_ERROR(AttachFilter(r->fd_, o.filter, o.iface));
  } else {
    int unused = 0;  // the kernel wants an int-sized argument it ignores
    if (setsockopt(r->fd_, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) != 0)
      return Status::FromErrno(errno, "setsockopt(SO_DETACH_FILTER) on", o.iface);
  }
  LOG_INFO << "ring on " << o.iface << ": " << o.blocks << " blocks of " << o.block_size / 1024 << " KiB ("
           << r->map_size_ / (1 << 20) << " MiB), block timeout " << o.block_timeout_ms << " ms"
           << (o.fanout ? ", fanout id " + std::to_string(o.fanout_id) : "");
  *out = std::move(r);
  return Status::OK();
}

Ring::~Ring() {
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) close(fd_);
}

Ring::Wait Ring::Next(int timeout_ms, uint8_t** block, Status* error) {
  uint8_t* b = map_ + static_cast<size_t>(cursor_) * block_size_;
  auto* desc = reinterpret_cast<struct tpacket_block_desc*>(b);
  for (int attempt = 0; attempt < 2; ++attempt) {
    uint32_t status = __atomic_load_n(&desc->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
    if (status & TP_STATUS_USER) {
      cursor_ = (cursor_ + 1) % blocks_;
      ++held_;
      *block = b;
      return Wait::kBlock;
    }
    if (attempt == 1) return held_ > 0 ? Wait::kHeld : Wait::kTimeout;
    struct pollfd pfd = {fd_, POLLIN, 0};
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return Wait::kTimeout;
      *error = Status::FromErrno(errno, "poll on capture socket of", iface_);
      return Wait::kError;
    }
    if (n == 0) return Wait::kTimeout;
    if (pfd.revents & (POLLERR | POLLNVAL)) {
      // POLLERR stays set until the error is read, so an unread error
      // makes every poll return at once: read it here, which clears it.
      int err = EBADF;  // POLLNVAL: the descriptor is not open
      socklen_t len = sizeof(err);
      if (!(pfd.revents & POLLNVAL) && getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        *error = Status::FromErrno(errno, "getsockopt(SO_ERROR) on capture socket of", iface_);
        return Wait::kError;
      }
      if (err != 0) {
        *error = Status::FromErrno(err, "capture socket of", iface_);
        return Wait::kError;
      }
    }
  }
  return Wait::kTimeout;
}

int64_t Ring::LastPacketMicros(const uint8_t* block) {
  const auto* desc = reinterpret_cast<const struct tpacket_block_desc*>(block);
  return static_cast<int64_t>(desc->hdr.bh1.ts_last_pkt.ts_sec) * 1000000 + desc->hdr.bh1.ts_last_pkt.ts_nsec / 1000;
}

bool Ring::Detached() const {
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof(sll));
  socklen_t len = sizeof(sll);
  if (getsockname(fd_, reinterpret_cast<struct sockaddr*>(&sll), &len) != 0) {
    LOG_ERROR << Status::FromErrno(errno, "getsockname on capture socket of", iface_).ToString();
    return false;
  }
  return sll.sll_ifindex != ifindex_;
}

void Ring::Release(uint8_t* block) {
  auto* desc = reinterpret_cast<struct tpacket_block_desc*>(block);
  __atomic_store_n(&desc->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  --held_;
}

Status Ring::UpdateStats() {
  struct tpacket_stats_v3 st;
  socklen_t len = sizeof(st);
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0)
    return Status::FromErrno(errno, "getsockopt(PACKET_STATISTICS) on", iface_);
  kernel_packets_ += st.tp_packets;
  kernel_drops_ += st.tp_drops;
  return Status::OK();
}

}  // namespace steno
