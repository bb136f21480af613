package capture_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// runDump runs stenodump and requires a clean outcome on a damaged file:
// exit status 0 or 1 (with a message), never a signal or a hang.
func runDump(t *testing.T, what string, args ...string) {
	t.Helper()
	r := testenv.Run(30*time.Second, testenv.Stenodump(t), args...)
	if r.Err == nil {
		return
	}
	var ee *exec.ExitError
	if !errors.As(r.Err, &ee) {
		t.Errorf("%s: %v", what, r.Err)
		return
	}
	if ee.ExitCode() != 1 || len(r.Stderr) == 0 {
		t.Errorf("%s: stenodump %v: %v (want exit 0, or 1 with a message); stderr: %s", what, args, ee, testenv.Tail(r.Stderr, 500))
	}
}

// TestStenodumpSurvivesCorruptFiles damages the reference packet and index
// files (truncation, random bytes in block and packet headers, garbage) and
// requires stenodump to end cleanly on each.
func TestStenodumpSurvivesCorruptFiles(t *testing.T) {
	up := testenv.UpstreamDir(t)
	pkt, err := os.ReadFile(filepath.Join(up, "capture", "PKT0", referenceCapture))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(up, "capture", "IDX0", referenceCapture))
	if err != nil {
		t.Fatal(err)
	}
	const block = 1 << 20
	pkt = pkt[:2*block] // two blocks keep each run short
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	checkPkt := func(name string, data []byte) {
		p := write(name, data)
		runDump(t, name+" positions", "positions", p)
		runDump(t, name+" packets", "packets", p, filepath.Join(dir, name+".pcap"))
		runDump(t, name+" reindex", "reindex", p, filepath.Join(dir, name+".idx"))
	}
	for _, n := range []int{1, 47, 48, 100, 4095, block - 1, block + 49, block + 5000} {
		checkPkt(fmt.Sprintf("pkt-trunc-%d", n), pkt[:n])
	}
	// Header fields set to extreme values: block header (48 bytes) and the
	// first packet's tpacket3_hdr of each block.
	first := int(binary.LittleEndian.Uint32(pkt[16:20]))
	for i, off := range []int{12, 16, 20, 0, first, first + 12, first + 16, first + 24, block + 12, block + 16} {
		for _, v := range []uint32{0xffffffff, 0x80000000, block, block - 1, 47} {
			d := append([]byte(nil), pkt...)
			binary.LittleEndian.PutUint32(d[off:], v)
			checkPkt(fmt.Sprintf("pkt-field-%d-%x", i, v), d)
		}
	}
	for i := 0; i < 40; i++ {
		d := append([]byte(nil), pkt...)
		for j := 0; j < 8; j++ {
			base := 0
			if rng.Intn(2) == 1 {
				base = block
			}
			d[base+rng.Intn(512)] = byte(rng.Intn(256))
		}
		checkPkt(fmt.Sprintf("pkt-random-%d", i), d)
	}

	checkIdx := func(name string, data []byte) {
		runDump(t, name, "index", write(name, data))
	}
	for _, n := range []int{0, 1, 47, 48, len(idx) / 2, len(idx) - 1} {
		checkIdx(fmt.Sprintf("idx-trunc-%d", n), idx[:n])
	}
	for i := 0; i < 40; i++ {
		d := append([]byte(nil), idx...)
		for j := 0; j < 4; j++ {
			// Most damage near the end: footer and index block.
			if rng.Intn(2) == 0 {
				d[len(d)-1-rng.Intn(200)] = byte(rng.Intn(256))
			} else {
				d[rng.Intn(len(d))] = byte(rng.Intn(256))
			}
		}
		checkIdx(fmt.Sprintf("idx-random-%d", i), d)
	}
	garbage := make([]byte, 4096)
	rng.Read(garbage)
	checkIdx("idx-garbage", garbage)
	checkPkt("pkt-garbage", garbage)
}
