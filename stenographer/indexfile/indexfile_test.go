package indexfile

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/internal/testdata"
)

// The reference's index files and their known contents
// (shared/upstream-testdata/README.md).
func TestReferenceIndexes(t *testing.T) {
	dir := filepath.Join(testdata.Shared(t), "upstream-testdata", "IDX0")
	addr := netip.MustParseAddr
	tests := []struct {
		file   string
		lo, hi []byte
		want   []uint32
	}{
		{"dhcp", PortKey(67), PortKey(67), []uint32{1048624, 1049024, 1049448, 1049848}},
		{"dhcp", PortKey(69), PortKey(69), nil},
		{"dhcp", ProtoKey(17), ProtoKey(17), []uint32{1048624, 1049024, 1049448, 1049848}},
		{"dhcp", ProtoKey(18), ProtoKey(18), nil},
		{"dhcp", AddrKey(addr("192.168.0.1")), AddrKey(addr("192.168.0.254")), []uint32{1049024, 1049848}},
		{"dhcp", AddrKey(addr("10.0.0.1")), AddrKey(addr("10.0.0.254")), nil},
		{"mpls", MPLSKey(29), MPLSKey(29), []uint32{1051144, 1054304, 1054592, 1054736, 1054888, 1055184, 1055328, 1055472, 1055800, 1056824, 1056968}},
		{"mpls", MPLSKey(55), MPLSKey(55), nil},
		{"vlan", VLANKey(7), VLANKey(7), []uint32{1123648, 1126248, 1178544, 1192552, 1208680}},
		{"vlan", VLANKey(8), VLANKey(8), nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			x, err := Open(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			got, err := x.Range(context.Background(), tc.lo, tc.hi)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Range(%x, %x) = %v, want %v", tc.lo, tc.hi, got, tc.want)
			}
		})
	}
	x, err := Open(filepath.Join(dir, "dhcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	entries, err := x.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var protoKeys []string
	for _, e := range entries {
		if e.Key[0] == TypeProto {
			protoKeys = append(protoKeys, string(e.Key))
		}
	}
	if want := []string{"\x01\x11", "\x01\x3a"}; !slices.Equal(protoKeys, want) {
		t.Errorf("proto keys = %q, want %q", protoKeys, want)
	}
}

func TestEmptyReferenceIndex(t *testing.T) {
	name := filepath.Join(testdata.Shared(t), "upstream-testdata", "capture", "IDX0", "1795335454945426")
	x, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	entries, err := x.Entries()
	if err != nil || len(entries) != 0 {
		t.Errorf("Entries = %d, %v; want none", len(entries), err)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not a leveldb table at all, not even close............"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	for _, name := range []string{garbage, empty} {
		if _, err := Open(name); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open(%s) err = %v, want ErrCorrupt", filepath.Base(name), err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) err = %v, want ErrNotExist", err)
	}
}

func TestCancelledLookup(t *testing.T) {
	x, err := Open(filepath.Join(testdata.Shared(t), "upstream-testdata", "capture", "IDX0", "1795335446956521"))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Range(ctx, []byte{TypeIPv4}, []byte{TypeIPv4, 0xff, 0xff, 0xff, 0xff}); !errors.Is(err, context.Canceled) {
		t.Errorf("Range with cancelled context err = %v", err)
	}
}
