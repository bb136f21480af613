package server

import (
	"errors"
	"maps"
	"testing"
)

func TestDiskFreeLines(t *testing.T) {
	bad := errors.New("statfs: no such directory")
	for _, tc := range []struct {
		name  string
		frees []DiskFree
		want  map[string]int64
	}{
		{"none", nil, map[string]int64{}},
		{"least of the directories", []DiskFree{
			{Thread: 0, Kind: KindPackets, Free: 500}, {Thread: 0, Kind: KindIndex, Free: 700},
			{Thread: 1, Kind: KindPackets, Free: 300}, {Thread: 1, Kind: KindIndex, Free: 900},
		}, map[string]int64{"t0_packets_free_bytes": 500, "t0_index_free_bytes": 700,
			"t1_packets_free_bytes": 300, "t1_index_free_bytes": 900, "disk_free_bytes": 300}},
		{"a failed statfs is left out, not 0", []DiskFree{
			{Thread: 0, Kind: KindPackets, Err: bad}, {Thread: 0, Kind: KindIndex, Free: 42},
		}, map[string]int64{"t0_index_free_bytes": 42, "disk_free_bytes": 42}},
		{"every statfs failed", []DiskFree{{Thread: 0, Kind: KindPackets, Err: bad}}, map[string]int64{}},
		{"a full disk is 0", []DiskFree{{Thread: 0, Kind: KindPackets, Free: 0}, {Thread: 0, Kind: KindIndex, Free: 9}},
			map[string]int64{"t0_packets_free_bytes": 0, "t0_index_free_bytes": 9, "disk_free_bytes": 0}},
		{"beyond int64 is clamped", []DiskFree{{Thread: 0, Kind: KindPackets, Free: 1 << 63}},
			map[string]int64{"t0_packets_free_bytes": 1<<63 - 1, "disk_free_bytes": 1<<63 - 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]int64{}
			diskFreeLines(tc.frees, got)
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
