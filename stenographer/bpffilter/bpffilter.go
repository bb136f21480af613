// Package bpffilter refines a query's result with any tcpdump expression,
// evaluated on the server so that a remote client receives only what it
// asked for (the Steno-Filter header, stenoquery --filter).
//
// Stage: packets → the packets a pcap-filter expression accepts. The
// expression is compiled by libpcap itself (loaded on the first Compile,
// see libpcap.go; for the Ethernet link type of the stored packets), so it
// means what it means to tcpdump, and the program runs in Go on each packet
// (golang.org/x/net/bpf's interpreter) as the client will receive it: a
// kernel-stripped VLAN tag is already restored by the packet reader. The
// index query narrows first; the filter only ever drops packets of its
// result.
package bpffilter

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/bpf"

	stenopcap "github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// MaxExpressionBytes bounds an expression's text.
const MaxExpressionBytes = 64 << 10

// ErrInvalid is wrapped by the errors of expressions that do not compile.
var ErrInvalid = errors.New("invalid filter")

// snaplen is what the compiled program assumes it may read: every stored
// byte (stenotype keeps whole frames).
const snaplen = 262144

// Filter is a compiled expression, safe for concurrent use.
type Filter struct {
	expr string
	prog []bpf.Instruction
	// lenLoads are the instructions that load the packet's length:
	// libpcap means the length on the wire (`greater`, `less`, `len`),
	// the interpreter the bytes it is given, so they differ for a packet
	// captured short (a snaplen).
	lenLoads []int
}

// Compile compiles a pcap-filter expression for Ethernet frames. The
// error of one that does not compile wraps ErrInvalid and carries
// libpcap's message; without libpcap every expression's error wraps
// ErrUnavailable.
func Compile(expr string) (*Filter, error) {
	if len(expr) > MaxExpressionBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(expr), MaxExpressionBytes)
	}
	lib, err := loadLibpcap()
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", expr, err)
	}
	ins, err := lib.compile(expr, snaplen)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalid, expr, err)
	}
	prog, ok := bpf.Disassemble(ins)
	if !ok {
		return nil, fmt.Errorf("%w %q: libpcap's program uses an instruction the interpreter lacks", ErrInvalid, expr)
	}
	// Checked here, once: NewVM refuses what it cannot run.
	if _, err := bpf.NewVM(prog); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalid, expr, err)
	}
	f := &Filter{expr: expr, prog: prog}
	for i, in := range prog {
		if ext, ok := in.(bpf.LoadExtension); ok && ext.Num == bpf.ExtLen {
			f.lenLoads = append(f.lenLoads, i)
		}
	}
	return f, nil
}

// String returns the expression.
func (f *Filter) String() string { return f.expr }

// Matcher returns a function that tells whether the filter accepts a
// frame of wireLen bytes on the wire. Each goroutine needs its own (the
// interpreter keeps scratch state).
func (f *Filter) Matcher() func(frame []byte, wireLen int) bool {
	vm := newVM(f.prog)
	return func(frame []byte, wireLen int) bool {
		run := vm
		if wireLen != len(frame) && len(f.lenLoads) > 0 {
			// Rare (a packet cut by a snaplen): a program whose length
			// loads give this packet's wire length.
			prog := append([]bpf.Instruction(nil), f.prog...)
			for _, i := range f.lenLoads {
				prog[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(wireLen)}
			}
			run = newVM(prog)
		}
		n, err := run.Run(frame)
		return err == nil && n > 0
	}
}

func newVM(prog []bpf.Instruction) *bpf.VM {
	vm, err := bpf.NewVM(prog)
	if err != nil {
		panic(err) // Compile checked the program; a constant load changes nothing NewVM checks
	}
	return vm
}

// Output passes on to w only the packets the filter accepts. Limits,
// counts and flushing are w's, so they count what the client receives.
func (f *Filter) Output(w stenopcap.Output) stenopcap.Output {
	return &output{Output: w, match: f.Matcher()}
}

type output struct {
	stenopcap.Output
	match func([]byte, int) bool
}

func (o *output) WriteFrom(iface int, ts time.Time, wireLen int, data []byte) error {
	if !o.match(data, wireLen) {
		return nil
	}
	return o.Output.WriteFrom(iface, ts, wireLen, data)
}
