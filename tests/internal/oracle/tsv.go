package oracle

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Row is one line of ../shared/pcaps/oracle.tsv: on File, Query selects
// Count packets, as tcpdump counts them with TcpdumpFilter.
type Row struct {
	File, Query, TcpdumpFilter string
	Count                      int
}

// ReadTSV reads oracle.tsv.
func ReadTSV(path string) ([]Row, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 0 || lines[0] != "file\tquery\ttcpdump_filter\tcount" {
		return nil, fmt.Errorf("%s: unexpected header", path)
	}
	var rows []Row
	for i, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("%s:%d: %d fields", path, i+2, len(f))
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: count: %w", path, i+2, err)
		}
		rows = append(rows, Row{File: f[0], Query: f[1], TcpdumpFilter: f[2], Count: n})
	}
	return rows, nil
}
