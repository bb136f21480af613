package gen_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
)

// TestOracleAgreesWithHandWrittenKeys checks the oracle against the keys
// written by hand for every generated frame, after a pcap round trip.
func TestOracleAgreesWithHandWrittenKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gen.pcap")
	cases, err := gen.WritePcap(path, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pcapfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Packets) != len(cases) || !f.Nanosecond {
		t.Fatalf("read %d packets (ns=%v), wrote %d", len(f.Packets), f.Nanosecond, len(cases))
	}
	names := map[string]bool{}
	for i, c := range cases {
		if names[c.Name] {
			t.Errorf("duplicate case name %s", c.Name)
		}
		names[c.Name] = true
		p := f.Packets[i]
		if string(p.Data) != string(c.Data) || p.WireLen != c.WireLen || !p.Time.Equal(gen.Packets(cases)[i].Time) {
			t.Errorf("%s: pcap round trip changed the record", c.Name)
		}
		var got []string
		for _, k := range oracle.Keys(p.Data) {
			got = append(got, k.String())
		}
		want := strings.Join(c.Keys, ", ")
		if g := strings.Join(sorted(got), ", "); g != want {
			t.Errorf("%s (#%d): oracle keys {%s}, hand-written {%s}", c.Name, i, g, want)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
