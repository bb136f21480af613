package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// PreviewPackets is how many packets POST /preview shows.
const PreviewPackets = 50

// PreviewPacket is one line of a preview: what `tcpdump -n` would say of
// the packet, and which sensor captured it.
type PreviewPacket struct {
	Time     time.Time `json:"time"`
	Sensor   string    `json:"sensor"`
	Src      string    `json:"src,omitempty"`
	Dst      string    `json:"dst,omitempty"`
	SrcPort  int       `json:"src_port,omitempty"`
	DstPort  int       `json:"dst_port,omitempty"`
	Protocol string    `json:"protocol"`
	Length   int       `json:"length"`
}

// Preview is the answer of POST /preview.
type Preview struct {
	Packets []PreviewPacket `json:"packets"`
	Missing []string        `json:"missing,omitempty"`
}

// handlePreview answers POST /preview (the query in the body, sensors in
// ?sensors=) with the first PreviewPackets packets as JSON. Each selected
// sensor is asked alone for its first PreviewPackets, so every packet
// keeps its sensor; their union's first PreviewPackets by time are the
// merged result's.
func (s *Server) handlePreview(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxQueryBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the query: %v", err), http.StatusBadRequest)
		return
	}
	sel, err := s.fleet.selectSensors(selection(r))
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	user := User(r.Context())
	parts := make([][]PreviewPacket, len(sel))
	errs := make([]error, len(sel))
	var wg sync.WaitGroup
	for i, sn := range sel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = s.fleet.previewOne(r.Context(), Request{Query: string(body), Sensors: []string{sn.cfg.Name},
				Limits: pcap.Limits{MaxPackets: PreviewPackets}, User: user})
		}()
	}
	wg.Wait()
	var out Preview
	refused, failed := 0, 0
	var reason error
	for i, err := range errs {
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			if re.Refused {
				refused++
			} else {
				failed++
			}
			reason = err
			out.Missing = append(out.Missing, sel[i].cfg.Name+"="+oneLine(err.Error()))
		case err != nil:
			failed++
			reason = err
			out.Missing = append(out.Missing, sel[i].cfg.Name+"="+oneLine(err.Error()))
		default:
			out.Packets = append(out.Packets, parts[i]...)
		}
	}
	s.log.Info("preview", "user", user, "query", string(body), "sensors", len(sel), "refused", refused, "failed", failed)
	if refused+failed == len(sel) {
		code := http.StatusBadGateway
		if refused == len(sel) {
			code = http.StatusBadRequest
		}
		http.Error(w, oneLine(reason.Error()), code)
		return
	}
	sort.SliceStable(out.Packets, func(i, j int) bool { return out.Packets[i].Time.Before(out.Packets[j].Time) })
	out.Packets = out.Packets[:min(len(out.Packets), PreviewPackets)]
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}

// previewOne runs q (one sensor, a packet limit) into memory and decodes it.
func (f *Fleet) previewOne(ctx context.Context, q Request) ([]PreviewPacket, error) {
	var buf bytes.Buffer
	if _, err := f.Query(ctx, q, &buf); err != nil {
		return nil, err
	}
	if buf.Len() == 0 {
		return nil, nil
	}
	pr, err := newPCAPReader(&buf)
	if err != nil {
		return nil, fmt.Errorf("preview of %s: %w", q.Sensors[0], err)
	}
	var out []PreviewPacket
	for {
		p, err := pr.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("preview of %s: %w", q.Sensors[0], err)
		}
		out = append(out, describePacket(p, q.Sensors[0]))
	}
}

// describePacket decodes what the preview shows of one Ethernet frame.
func describePacket(p pcap.Packet, sensor string) PreviewPacket {
	pp := PreviewPacket{Time: p.Timestamp.UTC(), Sensor: sensor, Length: p.WireLen, Protocol: "ethernet"}
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	if n := pkt.NetworkLayer(); n != nil {
		pp.Src, pp.Dst = n.NetworkFlow().Src().String(), n.NetworkFlow().Dst().String()
		pp.Protocol = strings.ToLower(n.LayerType().String())
	}
	switch l := pkt.TransportLayer().(type) {
	case *layers.TCP:
		pp.Protocol, pp.SrcPort, pp.DstPort = "tcp", int(l.SrcPort), int(l.DstPort)
	case *layers.UDP:
		pp.Protocol, pp.SrcPort, pp.DstPort = "udp", int(l.SrcPort), int(l.DstPort)
	case *layers.SCTP:
		pp.Protocol, pp.SrcPort, pp.DstPort = "sctp", int(l.SrcPort), int(l.DstPort)
	}
	if pkt.Layer(layers.LayerTypeICMPv4) != nil || pkt.Layer(layers.LayerTypeICMPv6) != nil {
		pp.Protocol = "icmp"
	}
	return pp
}

// SensorInfo is one entry of GET /sensors.
type SensorInfo struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
	// Health is the sensor's latest sample (absent before the first).
	Health *Sample `json:"health,omitempty"`
}

// handleSensors answers GET /sensors: the configured sensors and their
// tags, for the page's sensor selection, with each one's latest health.
func (s *Server) handleSensors(w http.ResponseWriter, _ *http.Request) {
	out := make([]SensorInfo, 0, len(s.fleet.sensors))
	for i, sn := range s.fleet.sensors {
		info := SensorInfo{Name: sn.cfg.Name, Tags: append([]string{}, sn.cfg.Tags...)}
		if h, ok := s.fleet.health.latest(i); ok {
			info.Health = &h
		}
		out = append(out, info)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
