package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

const minimal = `{
  "Threads": [ { "PacketsDirectory": "/data0/pkt", "IndexDirectory": "/data0/idx" } ],
  "Interface": "eth0",
  "Port": 1234
}`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Threads: []Thread{{Thread: store.Thread{PacketsDirectory: "/data0/pkt", IndexDirectory: "/data0/idx", Interface: "eth0"},
			DiskFreePercentage: 10, MaxDirectoryFiles: 30000}},
		StenotypePath: "/usr/bin/stenotype", Interface: "eth0", Port: 1234, Host: "127.0.0.1",
		Flags: []string{}, CertPath: "/etc/stenographer/certs", MaxOpenFiles: 1000,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}
}

// The example of SPEC §9, which is the reference's, parses unchanged.
func TestParseReferenceExample(t *testing.T) {
	c, err := Parse([]byte(`{ "Threads": [ { "PacketsDirectory": "/data0/pkt", "IndexDirectory": "/data0/idx",
                 "DiskFreePercentage": 10, "MaxDirectoryFiles": 30000 } ],
  "StenotypePath": "/usr/bin/stenotype", "Interface": "eth0",
  "Port": 1234, "Host": "127.0.0.1", "Flags": [], "CertPath": "/etc/stenographer/certs",
  "MaxOpenFiles": 100000,
  "Rpc": { "CaCert": "/rpc/ca", "ServerKey": "/rpc/key", "ServerCert": "/rpc/cert", "ServerPort": 8443,
           "ServerPcapPath": "/rpc/pcap", "ServerPcapMaxSize": 1000000000,
           "ClientPcapChunkSize": 1000, "ClientPcapMaxSize": 5000000 } }`))
	if err != nil {
		t.Fatal(err)
	}
	wantRpc := &Rpc{CaCert: "/rpc/ca", ServerKey: "/rpc/key", ServerCert: "/rpc/cert", ServerPort: 8443,
		ServerPcapPath: "/rpc/pcap", ServerPcapMaxSize: 1000000000, ClientPcapChunkSize: 1000, ClientPcapMaxSize: 5000000}
	if !reflect.DeepEqual(c.Rpc, wantRpc) || c.MaxOpenFiles != 100000 {
		t.Errorf("Rpc = %+v, MaxOpenFiles = %d", c.Rpc, c.MaxOpenFiles)
	}
}

func TestParseValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		got  func(*Config) any
		want any
	}{
		{"explicit zero limits take the defaults",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","DiskFreePercentage":0,"MaxDirectoryFiles":0}],"Interface":"lo","Port":1}`,
			func(c *Config) any { return [2]int{c.Threads[0].DiskFreePercentage, c.Threads[0].MaxDirectoryFiles} }, [2]int{10, 30000}},
		{"limits given",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","DiskFreePercentage":25,"MaxDirectoryFiles":7}],"Interface":"lo","Port":1}`,
			func(c *Config) any { return [2]int{c.Threads[0].DiskFreePercentage, c.Threads[0].MaxDirectoryFiles} }, [2]int{25, 7}},
		{"keys match without regard to case, as encoding/json",
			`{"threads":[{"packetsdirectory":"/p","INDEXDIRECTORY":"/i"}],"interface":"lo","port":99}`,
			func(c *Config) any { return c.Port }, 99},
		{"relative directories become absolute",
			`{"Threads":[{"PacketsDirectory":"rel/pkt","IndexDirectory":"/i"}],"Interface":"lo","Port":1}`,
			func(c *Config) any { return filepath.IsAbs(c.Threads[0].PacketsDirectory) }, true},
		{"host name that resolves",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Host":"localhost"}`,
			func(c *Config) any { return c.Host }, "localhost"},
		{"IPv6 host",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Host":"::1"}`,
			func(c *Config) any { return c.Host }, "::1"},
		{"Rpc sizes default when 0",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,
			  "Rpc":{"CaCert":"a","ServerKey":"b","ServerCert":"c","ServerPort":2}}`,
			func(c *Config) any {
				return [3]int64{c.Rpc.ServerPcapMaxSize, c.Rpc.ClientPcapChunkSize, c.Rpc.ClientPcapMaxSize}
			}, [3]int64{1000000000, 1000, 5000000}},
		{"Rpc null is no Rpc",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Rpc":null}`,
			func(c *Config) any { return c.Rpc == nil }, true},
		{"block size from Flags",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Flags":["--blocks=64","--blocksize_kb=256"]}`,
			func(c *Config) any { return c.BlockSize() }, 256 * 1024},
		{"block size from Flags as two words",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Flags":["--blocksize_kb","64"]}`,
			func(c *Config) any { return c.BlockSize() }, 64 * 1024},
		{"TestimonySocket is accepted and warned about",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"TestimonySocket":"/var/run/testimony.sock"}`,
			func(c *Config) any { return c.Warnings },
			[]string{`TestimonySocket "/var/run/testimony.sock" is ignored: stenotype captures from Interface lo itself`}},
		{"no warning without TestimonySocket",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"TestimonySocket":""}`,
			func(c *Config) any { return len(c.Warnings) }, 0},
		{"Rpc.ServerHost restricts gRPC",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,
			  "Rpc":{"CaCert":"a","ServerKey":"b","ServerCert":"c","ServerPort":2,"ServerHost":"::1"}}`,
			func(c *Config) any { return c.Rpc.ServerHost }, "::1"},
		{"no Rpc.ServerHost: gRPC on every address, as the reference",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,
			  "Rpc":{"CaCert":"a","ServerKey":"b","ServerCert":"c","ServerPort":2}}`,
			func(c *Config) any { return c.Rpc.ServerHost }, ""},
		{"no block size flag",
			`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Flags":["--uid=steno"]}`,
			func(c *Config) any { return c.BlockSize() }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	th := `"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}]`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", ``, `empty file (expected a JSON object)`},
		{"not an object", "\n[1]", `the file must hold one JSON object (line 2)`},
		{"syntax", "{\n\"Port\": 1,\n}", `invalid JSON: invalid character '}' looking for beginning of object key string (line 3)`},
		{"trailing data", `{` + th + `,"Interface":"lo","Port":1}}`, `unexpected data after the JSON object (line 1)`},
		{"unknown top-level key", "{\n  \"Threads\": [],\n  \"Prot\": 1\n}", `Prot: unknown key (line 3)`},
		{"unknown thread key", "{\"Threads\": [\n {\"PacketsDirectory\":\"/p\"},\n {\"PacketsDirectory\":\"/q\",\n  \"DiskFreePercent\": 5}]}",
			`Threads[1].DiskFreePercent: unknown key (line 4)`},
		{"unknown Rpc key", "{\"Rpc\": {\"CaCert\": \"x\", \"Port\": 1}}", `Rpc.Port: unknown key (line 1)`},
		{"wrong type", "{" + th + ",\n\"Port\": \"1234\"}", `Port: must be int, not a JSON string (line 2)`},
		{"no threads key", `{"Interface":"lo","Port":1}`, `Threads: at least one thread is required`},
		{"empty threads", `{"Threads":[],"Interface":"lo","Port":1}`, `Threads: at least one thread is required`},
		{"missing packets directory", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"},{"IndexDirectory":"/j"}],"Interface":"lo","Port":1}`,
			`Threads[1].PacketsDirectory: missing`},
		{"missing index directory", `{"Threads":[{"PacketsDirectory":"/p"}],"Interface":"lo","Port":1}`,
			`Threads[0].IndexDirectory: missing`},
		{"same directory twice", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/p/"}],"Interface":"lo","Port":1}`,
			`Threads[0].IndexDirectory: /p is also Threads[0].PacketsDirectory: file names would collide`},
		{"threads share a directory", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"},{"PacketsDirectory":"/i","IndexDirectory":"/j"}],"Interface":"lo","Port":1}`,
			`Threads[1].PacketsDirectory: /i is also Threads[0].IndexDirectory: file names would collide`},
		{"percentage above 100", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","DiskFreePercentage":101}],"Interface":"lo","Port":1}`,
			`Threads[0].DiskFreePercentage: 101 is outside 0..100`},
		{"negative percentage", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","DiskFreePercentage":-1}],"Interface":"lo","Port":1}`,
			`Threads[0].DiskFreePercentage: -1 is outside 0..100`},
		{"negative max files", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","MaxDirectoryFiles":-5}],"Interface":"lo","Port":1}`,
			`Threads[0].MaxDirectoryFiles: -5 is negative`},
		{"no interface", `{` + th + `,"Port":1}`, `Interface: missing (the interface stenotype captures on)`},
		{"bad interface", `{` + th + `,"Interface":"eth0 eth1","Port":1}`, `Interface: "eth0 eth1" is not an interface name`},
		{"bad thread interface", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"},{"PacketsDirectory":"/q","IndexDirectory":"/j","Interface":"a/b"}],"Interface":"lo","Port":1}`,
			`Threads[1].Interface: "a/b" is not an interface name`},
		{"thread interface too long", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","Interface":"abcdefghijklmnop"}],"Interface":"lo","Port":1}`,
			`Threads[0].Interface: "abcdefghijklmnop" is not an interface name`},
		{"thread without interface and no default", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","Interface":"eth1"},{"PacketsDirectory":"/q","IndexDirectory":"/j"}],"Port":1}`,
			`Threads[1].Interface: missing, and no top-level Interface to default to`},
		{"no port", `{` + th + `,"Interface":"lo"}`, `Port: missing (a TCP port, 1..65535)`},
		{"port too big", `{` + th + `,"Interface":"lo","Port":65536}`, `Port: 65536 is outside 1..65535`},
		{"negative port", `{` + th + `,"Interface":"lo","Port":-1}`, `Port: -1 is outside 1..65535`},
		{"host with port", `{` + th + `,"Interface":"lo","Port":1,"Host":"127.0.0.1:80"}`, `Host: "127.0.0.1:80" is not an IP address or a host name`},
		{"host URL", `{` + th + `,"Interface":"lo","Port":1,"Host":"https://x"}`, `Host: "https://x" is not an IP address or a host name`},
		{"negative MaxOpenFiles", `{` + th + `,"Interface":"lo","Port":1,"MaxOpenFiles":-1}`, `MaxOpenFiles: -1 is negative`},
		{"flag stenographer sets", `{` + th + `,"Interface":"lo","Port":1,"Flags":["-v","--dir=/x"]}`, `Flags[1]: --dir is set by stenographer; remove it`},
		{"rpc without CA", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"ServerKey":"k","ServerCert":"c","ServerPort":2}}`,
			`Rpc.CaCert: missing (required when Rpc is present)`},
		{"rpc without key", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerCert":"c","ServerPort":2}}`,
			`Rpc.ServerKey: missing (required when Rpc is present)`},
		{"rpc without cert", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerPort":2}}`,
			`Rpc.ServerCert: missing (required when Rpc is present)`},
		{"rpc without port", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerCert":"c"}}`,
			`Rpc.ServerPort: missing (required when Rpc is present)`},
		{"rpc port range", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerCert":"c","ServerPort":70000}}`,
			`Rpc.ServerPort: 70000 is outside 1..65535`},
		{"rpc port is the https port", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerCert":"c","ServerPort":1}}`,
			`Rpc.ServerPort: 1 is also Port`},
		{"rpc bad host", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerCert":"c","ServerPort":2,"ServerHost":"a b"}}`,
			`Rpc.ServerHost: "a b" is not an IP address or a host name`},
		{"rpc negative size", `{` + th + `,"Interface":"lo","Port":1,"Rpc":{"CaCert":"a","ServerKey":"k","ServerCert":"c","ServerPort":2,"ClientPcapMaxSize":-1}}`,
			`Rpc.ClientPcapMaxSize: -1 is negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n %s\nwant\n %s", err, tc.want)
			}
			if _, ok := err.(*Error); !ok {
				t.Errorf("error is %T, want *config.Error", err)
			}
		})
	}
}

// Threads may name their interfaces; the top-level Interface is the
// default of the others, and is optional when every thread names one.
func TestParseThreadInterfaces(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		threads  []string // each thread's Interface after Parse
		ifaces   []string // Interfaces()
	}{
		{"top-level only", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"},{"PacketsDirectory":"/q","IndexDirectory":"/j"}],"Interface":"eth0","Port":1}`,
			[]string{"eth0", "eth0"}, []string{"eth0"}},
		{"one thread elsewhere", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"},{"PacketsDirectory":"/q","IndexDirectory":"/j","Interface":"eth1"}],"Interface":"eth0","Port":1}`,
			[]string{"eth0", "eth1"}, []string{"eth0", "eth1"}},
		{"every thread names one, no default", `{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i","interface":"b"},{"PacketsDirectory":"/q","IndexDirectory":"/j","Interface":"a"},{"PacketsDirectory":"/r","IndexDirectory":"/k","Interface":"b"}],"Port":1}`,
			[]string{"b", "a", "b"}, []string{"b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, th := range c.StoreThreads() {
				got = append(got, th.Interface)
			}
			if !reflect.DeepEqual(got, tc.threads) || !reflect.DeepEqual(c.Interfaces(), tc.ifaces) {
				t.Errorf("thread interfaces %q, Interfaces() %q; want %q, %q", got, c.Interfaces(), tc.threads, tc.ifaces)
			}
		})
	}
}

// A host name that cannot resolve is an error naming Host. The .invalid
// top-level domain never resolves (RFC 6761).
func TestParseUnresolvableHost(t *testing.T) {
	_, err := Parse([]byte(`{"Threads":[{"PacketsDirectory":"/p","IndexDirectory":"/i"}],"Interface":"lo","Port":1,"Host":"no-such-host.invalid"}`))
	if err == nil || !strings.HasPrefix(err.Error(), `Host: "no-such-host.invalid" does not resolve: `) {
		t.Errorf("error = %v, want one naming Host", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config")
	if err := os.WriteFile(good, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.StoreThreads(), []store.Thread{{PacketsDirectory: "/data0/pkt", IndexDirectory: "/data0/idx", Interface: "eth0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("StoreThreads = %+v, want %+v", got, want)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(`{"Bogus": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || err.Error() != "config "+bad+": Bogus: unknown key (line 1)" {
		t.Errorf("Load(bad) = %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := Load(missing); err == nil || err.Error() != "config: open "+missing+": no such file or directory" {
		t.Errorf("Load(missing) = %v", err)
	}
}
