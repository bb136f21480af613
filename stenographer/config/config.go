// Package config reads stenographer's configuration file (SPEC §9), a JSON
// object compatible with the reference implementation's, and checks it
// before anything starts.
//
// Stage: file → validated Config. Input: the JSON bytes. Output: a Config
// with defaults filled in and directories made absolute, or an *Error
// naming the key that is wrong (and its line when the file gives one).
//
// Decisions beyond the reference:
//   - Unknown keys are errors (the reference ignores them, so a typo such
//     as "DiskFreePercent" silently used the default). Key names match
//     case-insensitively, as encoding/json decodes them.
//   - DiskFreePercentage and MaxDirectoryFiles of 0 mean the default, as in
//     the reference (it cannot tell 0 from a missing key), so a config moves
//     between the two unchanged. Negative values are errors.
//   - A missing or empty Host means 127.0.0.1, the address of the default
//     config: an empty Host would otherwise bind every interface. A Host
//     must be an IP address or a host name that resolves. Host is the
//     HTTPS address only: gRPC listens on every address, as in the
//     reference, unless Rpc.ServerHost (ours) names one.
//   - Port is required; StenotypePath defaults to /usr/bin/stenotype and
//     CertPath to /etc/stenographer/certs.
//   - A thread may name its own Interface (ours); the top-level Interface
//     is the default of the threads that do not, and is required unless
//     every thread names one. Threads on one interface are one stenotype
//     (one fanout group); each thread's Interface is filled in here.
//   - Flags must not set --dir, --threads or --iface: stenographer sets them.
//   - TestimonySocket (the reference's Testimony packet source) is accepted
//     and ignored, with a warning in Warnings: capture is always from
//     Interface.
//   - Two threads, or a thread's packet and index directory, must not share
//     a directory: the file names would collide.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Defaults for keys that are missing (or 0, see the package comment).
const (
	DefaultDiskFreePercentage  = 10
	DefaultMaxDirectoryFiles   = 30000
	DefaultMaxOpenFiles        = 1000
	DefaultHost                = "127.0.0.1"
	DefaultStenotypePath       = "/usr/bin/stenotype"
	DefaultCertPath            = "/etc/stenographer/certs"
	DefaultServerPcapMaxSize   = 1000000000
	DefaultClientPcapChunkSize = 1000
	DefaultClientPcapMaxSize   = 5000000
)

// Config is the whole file. JSON names are the reference's.
type Config struct {
	Threads       []Thread
	StenotypePath string
	Interface     string
	Port          int
	Host          string
	Flags         []string
	CertPath      string
	MaxOpenFiles  int
	Rpc           *Rpc `json:",omitempty"`
	// TestimonySocket is the reference's alternative packet source (a
	// Testimony daemon's socket). Accepted so a reference config loads;
	// stenotype always captures from Interface itself (see Warnings).
	TestimonySocket string `json:",omitempty"`

	// Warnings are things the daemon should log once at start: keys that
	// are accepted but have no effect.
	Warnings []string `json:"-"`
}

// Thread is one stenotype thread's storage and its limits: the
// directories are the store's Thread (one type for every package), the
// JSON keys stay flat as in the reference.
type Thread struct {
	store.Thread
	DiskFreePercentage int // delete oldest files while free space is at or below this
	MaxDirectoryFiles  int // delete oldest files while a thread has more pairs than this
}

// Rpc configures the optional gRPC server (SPEC §8).
type Rpc struct {
	CaCert     string
	ServerKey  string
	ServerCert string
	ServerPort int
	// ServerHost is the address gRPC listens on. Empty (the reference's
	// only behaviour): every address; mutual TLS guards it either way.
	ServerHost string `json:",omitempty"`
	// ServerPcapPath is accepted for compatibility; results are streamed
	// from the query engine, so nothing is written there.
	ServerPcapPath      string
	ServerPcapMaxSize   int64
	ClientPcapChunkSize int64
	ClientPcapMaxSize   int64
}

// Error is a configuration error about one key.
type Error struct {
	Key  string // e.g. "Threads[1].IndexDirectory"; empty for a syntax error
	Line int    // 1-based line in the file, 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Load reads and parses the file at path. Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes, checks and completes a configuration. Relative
// directories are made absolute against the working directory.
func Parse(data []byte) (*Config, error) {
	if err := checkKeys(data); err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Line: lineOf(data, dec.InputOffset()), Msg: "unexpected data after the JSON object"}
	}
	if err := c.complete(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeError turns encoding/json's errors into an *Error with a line.
func decodeError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &Error{Line: lineOf(data, syn.Offset), Msg: "invalid JSON: " + syn.Error()}
	case errors.As(err, &typ):
		return &Error{Key: typeErrorKey(typ), Line: lineOf(data, typ.Offset),
			Msg: fmt.Sprintf("must be %s, not a JSON %s", typ.Type, typ.Value)}
	case errors.Is(err, io.EOF):
		return &Error{Msg: "empty file (expected a JSON object)"}
	}
	return &Error{Msg: err.Error()}
}

// typeErrorKey renders the field path of a type error the way the other
// errors name keys. encoding/json gives "Threads.DiskFreePercentage"
// without the array index; the line says which element.
func typeErrorKey(e *json.UnmarshalTypeError) string {
	if e.Field == "" {
		return "(top level)"
	}
	return e.Field
}

func lineOf(data []byte, offset int64) int {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset < 0 {
		offset = 0
	}
	return bytes.Count(data[:offset], []byte{'\n'}) + 1
}

func (c *Config) complete() error {
	if len(c.Threads) == 0 {
		return &Error{Key: "Threads", Msg: "at least one thread is required"}
	}
	dirs := map[string]string{} // cleaned absolute dir → key using it
	for i := range c.Threads {
		th := &c.Threads[i]
		k := fmt.Sprintf("Threads[%d].", i)
		for _, d := range []struct {
			name string
			p    *string
		}{{"PacketsDirectory", &th.PacketsDirectory}, {"IndexDirectory", &th.IndexDirectory}} {
			if *d.p == "" {
				return &Error{Key: k + d.name, Msg: "missing"}
			}
			abs, err := filepath.Abs(*d.p)
			if err != nil {
				return &Error{Key: k + d.name, Msg: err.Error()}
			}
			*d.p = abs
			if other, dup := dirs[abs]; dup {
				return &Error{Key: k + d.name, Msg: fmt.Sprintf("%s is also %s: file names would collide", abs, other)}
			}
			dirs[abs] = k + d.name
		}
		switch {
		case th.DiskFreePercentage < 0 || th.DiskFreePercentage > 100:
			return &Error{Key: k + "DiskFreePercentage", Msg: fmt.Sprintf("%d is outside 0..100", th.DiskFreePercentage)}
		case th.DiskFreePercentage == 0:
			th.DiskFreePercentage = DefaultDiskFreePercentage
		}
		switch {
		case th.MaxDirectoryFiles < 0:
			return &Error{Key: k + "MaxDirectoryFiles", Msg: fmt.Sprintf("%d is negative", th.MaxDirectoryFiles)}
		case th.MaxDirectoryFiles == 0:
			th.MaxDirectoryFiles = DefaultMaxDirectoryFiles
		}
	}
	if c.StenotypePath == "" {
		c.StenotypePath = DefaultStenotypePath
	}
	if err := c.completeInterfaces(); err != nil {
		return err
	}
	if err := checkPort("Port", c.Port); err != nil {
		return err
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if err := checkHost("Host", c.Host); err != nil {
		return err
	}
	if c.CertPath == "" {
		c.CertPath = DefaultCertPath
	}
	switch {
	case c.MaxOpenFiles < 0:
		return &Error{Key: "MaxOpenFiles", Msg: fmt.Sprintf("%d is negative", c.MaxOpenFiles)}
	case c.MaxOpenFiles == 0:
		c.MaxOpenFiles = DefaultMaxOpenFiles
	}
	for i, f := range c.Flags {
		for _, own := range []string{"dir", "threads", "iface"} {
			if f == "--"+own || strings.HasPrefix(f, "--"+own+"=") {
				return &Error{Key: fmt.Sprintf("Flags[%d]", i), Msg: fmt.Sprintf("--%s is set by stenographer; remove it", own)}
			}
		}
	}
	if c.Flags == nil {
		c.Flags = []string{}
	}
	if c.TestimonySocket != "" {
		c.Warnings = append(c.Warnings, fmt.Sprintf("TestimonySocket %q is ignored: stenotype captures from Interface %s itself", c.TestimonySocket, strings.Join(c.Interfaces(), ", ")))
	}
	if c.Rpc != nil {
		return c.Rpc.complete(c.Port)
	}
	return nil
}

// completeInterfaces checks the top-level and the threads' Interface keys
// and gives every thread its interface.
func (c *Config) completeInterfaces() error {
	if c.Interface != "" {
		if err := checkInterface("Interface", c.Interface); err != nil {
			return err
		}
	}
	for i := range c.Threads {
		th := &c.Threads[i]
		if th.Interface != "" {
			if err := checkInterface(fmt.Sprintf("Threads[%d].Interface", i), th.Interface); err != nil {
				return err
			}
			continue
		}
		if c.Interface == "" {
			if slices.ContainsFunc(c.Threads, func(t Thread) bool { return t.Interface != "" }) {
				return &Error{Key: fmt.Sprintf("Threads[%d].Interface", i), Msg: "missing, and no top-level Interface to default to"}
			}
			return &Error{Key: "Interface", Msg: "missing (the interface stenotype captures on)"}
		}
		th.Interface = c.Interface
	}
	return nil
}

// checkInterface accepts what the kernel takes as a link name (IFNAMSIZ
// less its NUL, no slash or white space).
func checkInterface(key, name string) error {
	if strings.ContainsAny(name, "/: \t\n") || len(name) > 15 || name == "." || name == ".." {
		return &Error{Key: key, Msg: fmt.Sprintf("%q is not an interface name", name)}
	}
	return nil
}

// Interfaces returns the threads' interfaces, each once, in the order
// they first appear in Threads.
func (c *Config) Interfaces() []string {
	var out []string
	for _, th := range c.Threads {
		if !slices.Contains(out, th.Interface) {
			out = append(out, th.Interface)
		}
	}
	return out
}

func (r *Rpc) complete(httpPort int) error {
	for _, f := range []struct{ name, v string }{
		{"CaCert", r.CaCert}, {"ServerKey", r.ServerKey}, {"ServerCert", r.ServerCert},
	} {
		if f.v == "" {
			return &Error{Key: "Rpc." + f.name, Msg: "missing (required when Rpc is present)"}
		}
	}
	if r.ServerPort == 0 {
		return &Error{Key: "Rpc.ServerPort", Msg: "missing (required when Rpc is present)"}
	}
	if err := checkPort("Rpc.ServerPort", r.ServerPort); err != nil {
		return err
	}
	if r.ServerPort == httpPort {
		return &Error{Key: "Rpc.ServerPort", Msg: fmt.Sprintf("%d is also Port", r.ServerPort)}
	}
	if r.ServerHost != "" {
		if err := checkHost("Rpc.ServerHost", r.ServerHost); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *int64
		def  int64
	}{
		{"ServerPcapMaxSize", &r.ServerPcapMaxSize, DefaultServerPcapMaxSize},
		{"ClientPcapChunkSize", &r.ClientPcapChunkSize, DefaultClientPcapChunkSize},
		{"ClientPcapMaxSize", &r.ClientPcapMaxSize, DefaultClientPcapMaxSize},
	} {
		switch {
		case *f.v < 0:
			return &Error{Key: "Rpc." + f.name, Msg: fmt.Sprintf("%d is negative", *f.v)}
		case *f.v == 0:
			*f.v = f.def
		}
	}
	return nil
}

func checkPort(key string, p int) error {
	if p == 0 {
		return &Error{Key: key, Msg: "missing (a TCP port, 1..65535)"}
	}
	if p < 1 || p > 65535 {
		return &Error{Key: key, Msg: fmt.Sprintf("%d is outside 1..65535", p)}
	}
	return nil
}

// checkHost accepts an IP address, or a host name that resolves.
func checkHost(key, h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if !validHostName(h) {
		return &Error{Key: key, Msg: fmt.Sprintf("%q is not an IP address or a host name", h)}
	}
	if _, err := net.LookupHost(h); err != nil {
		return &Error{Key: key, Msg: fmt.Sprintf("%q does not resolve: %v", h, err)}
	}
	return nil
}

// validHostName checks RFC 1123 syntax: dot-separated labels of letters,
// digits and inner hyphens, at most 253 characters.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// StoreThreads returns the threads' directories for store.New.
func (c *Config) StoreThreads() []store.Thread {
	out := make([]store.Thread, len(c.Threads))
	for i, th := range c.Threads {
		out[i] = th.Thread
	}
	return out
}

// Flag returns the value of stenotype flag --name in Flags ("--name=v" or
// "--name v"; the last one wins, as in stenotype).
func (c *Config) Flag(name string) (string, bool) {
	var v string
	found := false
	for i := 0; i < len(c.Flags); i++ {
		f := c.Flags[i]
		switch {
		case strings.HasPrefix(f, "--"+name+"="):
			v, found = f[len(name)+3:], true
		case f == "--"+name && i+1 < len(c.Flags):
			v, found = c.Flags[i+1], true
			i++
		}
	}
	return v, found
}

// BlockSize returns the packet file block size in bytes from
// --blocksize_kb in Flags, or 0 (the store's default, 1 MiB) when absent
// or unreadable (stenotype then refuses the flag itself).
func (c *Config) BlockSize() int {
	v, ok := c.Flag("blocksize_kb")
	if !ok {
		return 0
	}
	kb, err := strconv.Atoi(v)
	if err != nil || kb <= 0 {
		return 0
	}
	return kb * 1024
}
