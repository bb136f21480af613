package bpffilter

// libpcap is loaded with dlopen on the first Compile rather than linked:
// a linked libpcap makes the dynamic loader map it and its dependencies
// (dbus, systemd, gcrypt, ...) at every start of every binary that
// imports this package, doubling the run time of a short stenoquery,
// though most processes never compile a filter. The header is used for
// its types only, so the compiler checks the signatures of what dlsym
// returns.

/*
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pcap/pcap.h>

struct steno_pcap {
	__typeof__(&pcap_open_dead) open_dead;
	__typeof__(&pcap_compile) compile;
	__typeof__(&pcap_geterr) geterr;
	__typeof__(&pcap_freecode) freecode;
	__typeof__(&pcap_close) close;
};

// steno_pcap_open fills p from the library name; on failure it returns -1
// with the reason in err. dlerror is read in the same call as dlopen so
// that it is the message of this thread's call.
static int steno_pcap_open(struct steno_pcap *p, const char *name, char *err, size_t errlen) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : name);
		return -1;
	}
	const char *missing = NULL;
#define STENO_SYM(field, sym) \
	if (missing == NULL && (p->field = (__typeof__(p->field))dlsym(h, #sym)) == NULL) missing = #sym;
	STENO_SYM(open_dead, pcap_open_dead)
	STENO_SYM(compile, pcap_compile)
	STENO_SYM(geterr, pcap_geterr)
	STENO_SYM(freecode, pcap_freecode)
	STENO_SYM(close, pcap_close)
#undef STENO_SYM
	if (missing != NULL) {
		snprintf(err, errlen, "%s has no %s", name, missing);
		dlclose(h);
		return -1;
	}
	return 0; // the library stays loaded for the life of the process
}

// steno_pcap_compile compiles expr for a dead handle of the link type and
// snaplen, as tcpdump -d does (optimized, netmask unknown). It returns 0
// and a malloc'd copy of the program (*n instructions, for the caller to
// free), or -1 with libpcap's message in err.
static int steno_pcap_compile(const struct steno_pcap *p, int linktype, int snaplen, const char *expr,
                              struct bpf_insn **insns, unsigned *n, char *err, size_t errlen) {
	pcap_t *h = p->open_dead(linktype, snaplen);
	if (h == NULL) {
		snprintf(err, errlen, "error opening dead capture");
		return -1;
	}
	struct bpf_program prog;
	memset(&prog, 0, sizeof(prog));
	if (p->compile(h, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(err, errlen, "%s", p->geterr(h));
		p->close(h);
		return -1;
	}
	int rc = 0;
	*n = prog.bf_len;
	*insns = malloc(sizeof(struct bpf_insn) * (prog.bf_len > 0 ? prog.bf_len : 1));
	if (*insns == NULL) {
		snprintf(err, errlen, "out of memory for %u instructions", prog.bf_len);
		rc = -1;
	} else {
		memcpy(*insns, prog.bf_insns, sizeof(struct bpf_insn) * prog.bf_len);
	}
	p->freecode(&prog);
	p->close(h);
	return rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
)

// ErrUnavailable is wrapped by Compile's error when libpcap cannot be
// loaded: filters need it, nothing else does.
var ErrUnavailable = errors.New("libpcap, which filters need, could not be loaded")

// libpcapNames are tried in turn: Debian's soname (package libpcap0.8),
// upstream's, then the development symlink.
var libpcapNames = []string{"libpcap.so.0.8", "libpcap.so.1", "libpcap.so"}

// loadLibpcap loads libpcap once per process, on first use; a failure is
// kept, as the library will not appear later either.
var loadLibpcap = sync.OnceValues(func() (*libpcap, error) { return openLibpcap(libpcapNames) })

// libpcap is a loaded library's entry points.
type libpcap struct {
	fns C.struct_steno_pcap
	// mu serializes pcap_compile: before libpcap 1.8 its parser kept
	// global state.
	mu sync.Mutex
}

func openLibpcap(names []string) (*libpcap, error) {
	l := new(libpcap)
	var reasons []string
	for _, name := range names {
		var errbuf [C.PCAP_ERRBUF_SIZE]C.char
		cname := C.CString(name)
		rc := C.steno_pcap_open(&l.fns, cname, &errbuf[0], C.size_t(len(errbuf)))
		C.free(unsafe.Pointer(cname))
		if rc == 0 {
			return l, nil
		}
		reasons = append(reasons, C.GoString(&errbuf[0]))
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(reasons, "; "))
}

// compile returns the program of expr for Ethernet frames of up to
// snaplen bytes, or libpcap's message.
func (l *libpcap) compile(expr string, snaplen int) ([]bpf.RawInstruction, error) {
	cexpr := C.CString(expr)
	defer C.free(unsafe.Pointer(cexpr))
	var (
		insns  *C.struct_bpf_insn
		n      C.unsigned
		errbuf [C.PCAP_ERRBUF_SIZE]C.char
	)
	l.mu.Lock()
	rc := C.steno_pcap_compile(&l.fns, C.DLT_EN10MB, C.int(snaplen), cexpr, &insns, &n, &errbuf[0], C.size_t(len(errbuf)))
	l.mu.Unlock()
	if rc != 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	defer C.free(unsafe.Pointer(insns))
	raw := make([]bpf.RawInstruction, n)
	for i, in := range unsafe.Slice(insns, int(n)) {
		raw[i] = bpf.RawInstruction{Op: uint16(in.code), Jt: uint8(in.jt), Jf: uint8(in.jf), K: uint32(in.k)}
	}
	return raw, nil
}
