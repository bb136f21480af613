package capture_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// importTimeout bounds one `stenotype --pcap_in` run (the largest corpus
// file has 82,582 packets).
const importTimeout = 2 * time.Minute

// importPcap runs stenotype --pcap_in into a fresh directory and returns
// the directory. Privileges are dropped to nobody as in production, so the
// directory is nobody's.
func importPcap(t *testing.T, pcap string, flags ...string) string {
	t.Helper()
	dir := testenv.OutputDir(t, 1)
	importInto(t, plainStenotype(t), dir, pcap, flags...)
	return dir
}

// importInto runs `stenotype --pcap_in` with bin into dir and returns its
// stderr.
func importInto(t *testing.T, bin stenotypeBin, dir, pcap string, flags ...string) []byte {
	t.Helper()
	name, args := bin.command(append([]string{"--pcap_in=" + pcap, "--dir=" + dir}, flags...)...)
	r := testenv.Run(importTimeout, name, args...)
	checkSanitizers(t, "import of "+pcap, r.Stderr)
	if r.Err != nil {
		t.Fatalf("import: %v", r.Err)
	}
	return r.Stderr
}

// checkImport verifies an imported directory against the source pcap:
// packet count, frames, lengths and timestamps, file names, index keys
// (against the oracle), and every oracle.tsv row for the file.
func checkImport(t *testing.T, name string, orig *pcapfile.File, dir string, blocksizeKB int, rows []oracle.Row) *steno.Stored {
	t.Helper()
	st := steno.ReadThread(t, dir, 0, blocksizeKB)
	checkModes(t, dir)
	if len(st.Packets) != len(orig.Packets) {
		t.Errorf("%s: stored %d packets in %d files, pcap has %d", name, len(st.Packets), len(st.Pairs), len(orig.Packets))
	}
	label := func(i int) string {
		if i >= len(st.FileOf) {
			return fmt.Sprintf("%s packet #%d", name, i)
		}
		return fmt.Sprintf("%s packet #%d (file %s position %d)", name, i, st.Pairs[st.FileOf[i]].Name,
			st.Positions[st.FileOf[i]][i-firstOrdinal(st, st.FileOf[i])].Pos)
	}

	// Frames, lengths, timestamps.
	r := &reporter{t: t, what: "packets"}
	var positions []steno.Position
	for _, ps := range st.Positions {
		positions = append(positions, ps...)
	}
	for i := 0; i < len(orig.Packets) && i < len(st.Packets); i++ {
		want, got := orig.Packets[i], st.Packets[i]
		if string(want.Data) != string(got.Data) {
			r.errorf("%s: frame differs: %s", label(i), frameDiff(want.Data, got.Data))
		}
		if got.WireLen != want.WireLen || positions[i].WireLen != want.WireLen || positions[i].SnapLen != len(want.Data) {
			r.errorf("%s: lengths: pcap caplen %d wire %d; positions snaplen %d wire %d; packets wire %d",
				label(i), len(want.Data), want.WireLen, positions[i].SnapLen, positions[i].WireLen, got.WireLen)
		}
		if !got.Time.Equal(want.Time) {
			r.errorf("%s: timestamp %s, pcap %s", label(i), got.Time.Format(time.RFC3339Nano), want.Time.Format(time.RFC3339Nano))
		}
	}
	r.done()

	// File names: the first packet's time in microseconds, strictly
	// increasing (checked by Pairs), never before the file's first packet.
	for fi, p := range st.Pairs {
		if len(st.Positions[fi]) == 0 {
			continue
		}
		first := st.Positions[fi][0].Time()
		us := uint64(first.Unix())*1e6 + uint64(first.Nanosecond()/1000)
		// A first packet at the epoch gives name 1: names start above 0.
		if fi == 0 && p.Micros != max(us, 1) {
			t.Errorf("%s: first file is named %s, its first packet is at %d µs", name, p.Name, us)
		}
		if p.Micros < us {
			t.Errorf("%s: file %s is named before its first packet (%d µs)", name, p.Name, us)
		}
	}

	checkKeys(t, "index keys", frames(orig.Packets), st.Keys, label)

	// The oracle.tsv rows of this file, answered from the index.
	for _, row := range rows {
		q, err := oracle.ParseQuery(row.Query)
		if err != nil {
			t.Fatal(err)
		}
		if n := countMatches(q, st.Keys); n != row.Count {
			t.Errorf("%s: query %q selects %d packets through the index, tcpdump counts %d", name, row.Query, n, row.Count)
		}
	}
	return st
}

func firstOrdinal(st *steno.Stored, file int) int {
	n := 0
	for i := 0; i < file; i++ {
		n += len(st.Positions[i])
	}
	return n
}

// checkReindex checks that `stenodump reindex` of every packet file gives
// the same index as the one stenotype wrote.
func checkReindex(t *testing.T, st *steno.Stored, blocksizeKB int) {
	t.Helper()
	for _, p := range st.Pairs {
		out := filepath.Join(t.TempDir(), "reindex")
		testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "reindex",
			fmt.Sprintf("--blocksize_kb=%d", blocksizeKB), p.PKT, out)
		a := testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "index", p.IDX)
		b := testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "index", out)
		if string(a) != string(b) {
			t.Errorf("stenodump reindex %s gives another index than stenotype wrote (%d vs %d bytes of dump)", p.PKT, len(b), len(a))
		}
	}
}

// TestImportGenerated imports the generated pcap (every encapsulation the
// indexer handles, hand-written keys): runs without the shared corpus.
func TestImportGenerated(t *testing.T) {
	testenv.RequireRoot(t)
	path, cases, orig := generatedPcap(t)
	for _, bs := range []int{1024, 4} {
		t.Run(fmt.Sprintf("blocksize_kb=%d", bs), func(t *testing.T) {
			dir := importPcap(t, path, fmt.Sprintf("--blocksize_kb=%d", bs))
			st := checkImport(t, "generated.pcap", orig, dir, bs, nil)
			// The hand-written keys, by case name, for readable failures.
			for i, c := range cases {
				if i >= len(st.Keys) {
					break
				}
				var got []string
				for _, k := range st.Keys[i] {
					got = append(got, k.String())
				}
				sort.Strings(got)
				if strings.Join(got, ",") != strings.Join(c.Keys, ",") {
					t.Errorf("case %s (#%d): index keys %v, want %v", c.Name, i, got, c.Keys)
				}
			}
			checkReindex(t, st, bs)
		})
	}
}

// TestImportCorpus imports every Ethernet pcap of the shared corpus.
func TestImportCorpus(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PcapDir(t)
	rows, err := oracle.ReadTSV(filepath.Join(dir, "oracle.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string][]oracle.Row{}
	for _, r := range rows {
		byFile[r.File] = append(byFile[r.File], r)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pcaps in %s (%v)", dir, err)
	}
	for f := range byFile {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("oracle.tsv names %s: %v", f, err)
		}
	}
	testenv.Stenotype(t) // fail once, not per file, when not built
	testenv.Stenodump(t)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".pcap"), func(t *testing.T) {
			t.Parallel()
			raw, err := pcapfile.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			orig := raw.LibpcapView() // what the import reads, via libpcap
			if orig.LinkType != 1 {
				t.Skipf("link type %d is not Ethernet", orig.LinkType)
			}
			out := importPcap(t, path)
			st := checkImport(t, name, orig, out, 1024, byFile[name])
			if len(orig.Packets) < 2000 {
				checkReindex(t, st, 1024)
			}
		})
	}
}

// TestImportRotation imports the largest corpus file with rotation by size
// and by packet age, and checks the files concatenate to the pcap.
func TestImportRotation(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PcapDir(t)
	for _, tc := range []struct {
		file  string
		flags []string
		min   int // at least this many files
	}{
		{"zeek-echo-connections.pcap", []string{"--filesize_mb=1"}, 5},
		{"mercury-emix.pcap", []string{"--filesize_mb=1", "--blocksize_kb=64"}, 2},
		{"pcapplusplus-example.pcap", []string{"--fileage_sec=1"}, 3},
	} {
		t.Run(tc.file+strings.Join(tc.flags, ""), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tc.file)
			orig, err := pcapfile.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			out := importPcap(t, path, tc.flags...)
			bs := 1024
			for _, f := range tc.flags {
				fmt.Sscanf(f, "--blocksize_kb=%d", &bs)
			}
			st := checkImport(t, tc.file, orig, out, bs, nil)
			if len(st.Pairs) < tc.min {
				t.Errorf("%d files, want at least %d with %v", len(st.Pairs), tc.min, tc.flags)
			}
			for _, p := range st.Pairs {
				fi, err := os.Stat(p.PKT)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size()%int64(bs*1024) != 0 {
					t.Errorf("%s: size %d is not a whole number of %d KiB blocks", p.PKT, fi.Size(), bs)
				}
				for _, f := range tc.flags {
					if f == "--filesize_mb=1" && fi.Size() > 1<<20+int64(bs*1024) {
						t.Errorf("%s: %d bytes with --filesize_mb=1", p.PKT, fi.Size())
					}
				}
			}
		})
	}
}

// TestTcpdumpAgreesWithOracleTSV re-runs tcpdump for a handful of short
// rows, to confirm the recorded counts on this machine's tcpdump.
func TestTcpdumpAgreesWithOracleTSV(t *testing.T) {
	dir := testenv.PcapDir(t)
	testenv.RequireTools(t, "tcpdump")
	rows, err := oracle.ReadTSV(filepath.Join(dir, "oracle.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, row := range rows {
		if len(row.TcpdumpFilter) > 40 || n >= 8 {
			continue
		}
		n++
		out := testenv.MustRun(t, testenv.Deadline, "tcpdump", "-nr", filepath.Join(dir, row.File), "--count", row.TcpdumpFilter)
		var got int
		if _, err := fmt.Sscanf(string(out), "%d packets", &got); err != nil {
			t.Fatalf("tcpdump --count output %q: %v", out, err)
		}
		if got != row.Count {
			t.Errorf("%s: tcpdump %q counts %d, oracle.tsv says %d", row.File, row.TcpdumpFilter, got, row.Count)
		}
	}
}

// TestImportDirectories checks how stenotype treats its output directory
// when it runs as root and drops to nobody (its default): it must either
// make PKT0/IDX0 usable by the user it runs as, or fail with a non-zero
// exit status; it must never exit 0 without having written the data.
func TestImportDirectories(t *testing.T) {
	testenv.RequireRoot(t)
	pcap, _, orig := generatedPcap(t)
	t.Run("creates PKT0 and IDX0 it can write", func(t *testing.T) {
		dir := testenv.OutputDir(t, 0) // nobody's, empty
		r := testenv.Run(importTimeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir="+dir)
		if r.Err != nil {
			t.Fatalf("import into an empty directory owned by nobody: %v", r.Err)
		}
		if len(steno.LastStats(r.Stderr)) > 0 && steno.LastStats(r.Stderr)[0].Files == 0 {
			t.Errorf("stenotype exited 0 but wrote no file; stderr:\n%s", testenv.Tail(r.Stderr, 2000))
		}
		checkImport(t, "generated.pcap", orig, dir, 1024, nil)
	})
	t.Run("unwritable PKT0 is an error", func(t *testing.T) {
		// stenotype creates missing PKT0/IDX0 for the user it drops to; an
		// existing PKT0 it cannot write must stop it with an error.
		dir := filepath.Join(readableDir(t), "rootonly")
		for _, d := range []string{dir, filepath.Join(dir, "PKT0"), filepath.Join(dir, "IDX0")} {
			if err := os.Mkdir(d, 0o755); err != nil { // root's: nobody cannot write
				t.Fatal(err)
			}
		}
		r := testenv.Run(importTimeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir="+dir)
		if r.Err == nil {
			t.Errorf("stenotype exited 0 though it could not write %s as nobody; stderr:\n%s", dir, testenv.Tail(r.Stderr, 2000))
		}
	})
	t.Run("missing directory is an error", func(t *testing.T) {
		r := testenv.Run(importTimeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir=/nonexistent/steno-test")
		if r.Err == nil {
			t.Errorf("stenotype exited 0 with --dir=/nonexistent/steno-test")
		}
	})
	t.Run("missing pcap is an error", func(t *testing.T) {
		r := testenv.Run(importTimeout, testenv.Stenotype(t), "--pcap_in=/nonexistent.pcap", "--dir="+testenv.OutputDir(t, 1))
		if r.Err == nil {
			t.Errorf("stenotype exited 0 with a missing --pcap_in file")
		}
	})
}

// TestImportTwice imports the same pcap twice into one directory: the
// second import must not replace the first one's files (same first-packet
// time, so the same names) but take the next free names, 1 µs later, so
// both imports' packets are stored and every key is indexed twice.
func TestImportTwice(t *testing.T) {
	testenv.RequireRoot(t)
	generated, _, _ := generatedPcap(t)
	cases := []struct {
		name  string
		pcap  func(t *testing.T) string
		flags []string
	}{
		{"generated", func(*testing.T) string { return generated }, nil},
		// Rotation by packet age: each import writes several files, and the
		// second import's names interleave with the first's.
		{"corpus rotated", func(t *testing.T) string {
			return filepath.Join(testenv.PcapDir(t), "pcapplusplus-example.pcap")
		}, []string{"--fileage_sec=1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.pcap(t)
			orig, err := pcapfile.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			dir := testenv.OutputDir(t, 1)
			importInto(t, plainStenotype(t), dir, path, tc.flags...)
			first := steno.Pairs(t, dir, 0)
			stderr := importInto(t, plainStenotype(t), dir, path, tc.flags...)
			if !strings.Contains(string(stderr), "is taken") {
				t.Errorf("second import logged no name it moved past; stderr:\n%s", testenv.Tail(stderr, 2000))
			}
			st := steno.ReadThread(t, dir, 0, 1024)
			checkModes(t, dir)
			if len(st.Pairs) != 2*len(first) {
				t.Errorf("%d file pairs after two imports, want %d (twice the first import's)", len(st.Pairs), 2*len(first))
			}
			twice := append(frames(orig.Packets), frames(orig.Packets)...)
			if a, b := equalMultiset(twice, frames(st.Packets)); a != 0 || b != 0 {
				t.Errorf("after two imports: %d frames of the pcap (counted twice) missing, %d stored frames extra (stored %d, pcap %d)",
					a, b, len(st.Packets), len(orig.Packets))
			}
			checkKeys(t, "index keys", frames(st.Packets), st.Keys, func(i int) string {
				return fmt.Sprintf("stored packet #%d (file %s)", i, st.Pairs[st.FileOf[i]].Name)
			})
			// The first import's files are still there, unchanged in name;
			// the second's are each 1 µs after one of them.
			names := map[uint64]bool{}
			for _, p := range st.Pairs {
				names[p.Micros] = true
			}
			for _, p := range first {
				if !names[p.Micros] || !names[p.Micros+1] {
					t.Errorf("first import's %s: pair present %v, pair 1 µs later present %v", p.Name, names[p.Micros], names[p.Micros+1])
				}
			}
		})
	}
}
