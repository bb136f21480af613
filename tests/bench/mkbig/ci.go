package main

import (
	"time"

	"github.com/google/gopacket"
)

func gopacketCI(ts time.Time, capLen, wire int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: capLen, Length: max(wire, capLen)}
}
