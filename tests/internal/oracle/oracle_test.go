package oracle_test

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestOracleMatchesTcpdumpCounts checks the oracle itself: evaluating every
// oracle.tsv query on the oracle's keys gives tcpdump's count.
func TestOracleMatchesTcpdumpCounts(t *testing.T) {
	dir := testenv.PcapDir(t)
	rows, err := oracle.ReadTSV(filepath.Join(dir, "oracle.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]oracle.Set{}
	for _, row := range rows {
		ks, ok := keys[row.File]
		if !ok {
			f, err := pcapfile.Read(filepath.Join(dir, row.File))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range f.Packets {
				ks = append(ks, oracle.Keys(p.Data))
			}
			keys[row.File] = ks
		}
		q, err := oracle.ParseQuery(row.Query)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range ks {
			if q.Match(s) {
				n++
			}
		}
		if n != row.Count {
			t.Errorf("%s: %q: oracle counts %d, tcpdump %d", row.File, row.Query, n, row.Count)
		}
	}
}

func TestFormatAddrLikeInetNtop(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4":              "1.2.3.4",
		"::":                   "::",
		"::1":                  "::1",
		"::1.2.3.4":            "::1.2.3.4",
		"::0.0.1.2":            "::102",
		"::ffff:1.2.3.4":       "::ffff:1.2.3.4",
		"2001:db8::1":          "2001:db8::1",
		"2001:db8:0:1::1":      "2001:db8:0:1::1",
		"2001:0:0:1::1":        "2001:0:0:1::1",
		"fe80::1:0:0:0":        "fe80::1:0:0:0",
		"2001:db8:0:0:1:0:0:1": "2001:db8::1:0:0:1",
		"1:0:2:3:4:5:6:7":      "1:0:2:3:4:5:6:7",
	} {
		if got := oracle.FormatAddr(netip.MustParseAddr(in)); got != want {
			t.Errorf("FormatAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
