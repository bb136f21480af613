package server

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/retention"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Directory kinds, the kind label of stenographer_disk_free_bytes.
const (
	KindPackets = "packets"
	KindIndex   = "index"
)

// DiskFree is the space left on the filesystem of one thread's directory.
type DiskFree struct {
	Thread int
	Kind   string // KindPackets or KindIndex
	Dir    string
	// Free is what stenotype (unprivileged) may still write, in bytes.
	Free uint64
	Err  error // statfs failed; Free is 0
}

var diskFree = prometheus.NewDesc("stenographer_disk_free_bytes",
	"Space left for stenotype on the filesystem of each thread's packets and index directory (kind). Absent while statfs fails.",
	[]string{"thread", "kind"}, nil)

// DiskFrees measures each thread's packets and index directory. Threads
// sharing a filesystem report the same space: it is not to be summed.
func DiskFrees(st *store.Store) []DiskFree {
	out := make([]DiskFree, 0, 2*st.Threads())
	for i := range st.Threads() {
		th := st.Thread(i)
		for _, d := range []struct{ kind, dir string }{{KindPackets, th.PacketsDirectory}, {KindIndex, th.IndexDirectory}} {
			df := DiskFree{Thread: i, Kind: d.kind, Dir: d.dir}
			disk, err := retention.FreeSpace(d.dir)
			if err != nil {
				df.Err = fmt.Errorf("statfs %s: %w", d.dir, err)
			} else {
				df.Free = disk.Free
			}
			out = append(out, df)
		}
	}
	return out
}

func collectDiskFree(st *store.Store, ch chan<- prometheus.Metric) {
	for _, d := range DiskFrees(st) {
		if d.Err == nil {
			ch <- prometheus.MustNewConstMetric(diskFree, prometheus.GaugeValue, float64(d.Free), strconv.Itoa(d.Thread), d.Kind)
		}
	}
}

// diskFreeLines are /debug/stats' t<i>_<kind>_free_bytes and
// disk_free_bytes, the least of them: the directory that fills first.
func diskFreeLines(frees []DiskFree, v map[string]int64) {
	least := int64(-1)
	for _, d := range frees {
		if d.Err != nil {
			continue
		}
		n := int64(min(d.Free, uint64(1<<63-1)))
		v[fmt.Sprintf("t%d_%s_free_bytes", d.Thread, d.Kind)] = n
		if least < 0 || n < least {
			least = n
		}
	}
	if least >= 0 {
		v["disk_free_bytes"] = least
	}
}
