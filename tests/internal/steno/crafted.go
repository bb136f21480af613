package steno

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
)

// CraftedIndex is an index table with valid checksums (LevelDB's masked
// CRC-32C) whose one data block holds the version record and proto 6 at
// position 48, and whose index block points at that block with the
// handle given.
func CraftedIndex(off, length uint64) []byte {
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	block := func(contents []byte) []byte {
		out := append(slices.Clone(contents), 0)
		c := crc32.Checksum(out, castagnoli)
		return binary.LittleEndian.AppendUint32(out, (c>>15|c<<17)+0xa282ead8)
	}
	entry := func(key, value []byte) []byte {
		return append(append([]byte{0, byte(len(key)), byte(len(value))}, key...), value...)
	}
	withRestart := func(b []byte) []byte { return append(b, 0, 0, 0, 0, 1, 0, 0, 0) }
	data := withRestart(append(entry([]byte{0}, []byte{0, 0, 0, 2, 0, 0, 0, 0}), entry([]byte{1, 6}, []byte{0, 0, 0, 48})...))
	file := block(data)
	meta := [2]uint64{uint64(len(file)), 8}
	file = append(file, block(withRestart(nil))...)
	handle := binary.AppendUvarint(binary.AppendUvarint(nil, off), length)
	idx := withRestart(entry([]byte{1, 6}, handle))
	index := [2]uint64{uint64(len(file)), uint64(len(idx))}
	file = append(file, block(idx)...)
	var footer []byte
	for _, v := range []uint64{meta[0], meta[1], index[0], index[1]} {
		footer = binary.AppendUvarint(footer, v)
	}
	footer = append(footer, make([]byte, 40-len(footer))...)
	return binary.LittleEndian.AppendUint64(append(file, footer...), 0xdb4775248b80fb57)
}
